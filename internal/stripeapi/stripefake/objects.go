package stripefake

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Session describes a completed Checkout Session in the terms the fulfiller
// cares about; PutSession renders it as the full Stripe object. The JSON tags
// define the body of POST /_fake/sessions.
type Session struct {
	ID string `json:"id"`
	// Mode is "payment" (the default), "subscription" or "setup".
	Mode string `json:"mode,omitempty"`
	// PaymentStatus is "paid" (the default), "unpaid" or
	// "no_payment_required".
	PaymentStatus string `json:"payment_status,omitempty"`
	// Status is "complete" (the default), "open" or "expired".
	Status string `json:"status,omitempty"`
	// CustomerEmail is served as customer_email and customer_details.email.
	CustomerEmail string `json:"customer_email,omitempty"`
	// Customer, PaymentIntent, Subscription and Invoice are object IDs,
	// served as given (null when empty) whatever the mode, so a test can
	// build inconsistent sessions on purpose.
	Customer      string `json:"customer,omitempty"`
	PaymentIntent string `json:"payment_intent,omitempty"`
	Subscription  string `json:"subscription,omitempty"`
	Invoice       string `json:"invoice,omitempty"`
	// DiscordID, when set, is served as the custom field
	// {key:"discord_id", type:"text", text:{value:DiscordID}}.
	DiscordID string            `json:"discord_id,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	Items     []Item            `json:"items,omitempty"`
	// Currency is the session's and its prices' ISO code, lower case;
	// "usd" by default.
	Currency string `json:"currency,omitempty"`
}

// Item is one line item of a Session.
type Item struct {
	PriceID string `json:"price_id"`
	// Quantity defaults to 1.
	Quantity int64 `json:"quantity,omitempty"`
	// Recurring makes the price a monthly recurring one; otherwise it is
	// one_time.
	Recurring bool `json:"recurring,omitempty"`
	// Description defaults to "Fake product <PriceID>".
	Description string `json:"description,omitempty"`
	// UnitAmount is in the currency's minor unit (cents); 0 means 1000.
	UnitAmount int64 `json:"unit_amount,omitempty"`
}

const (
	defaultCurrency   = "usd"
	defaultUnitAmount = 1000
)

var (
	validModes          = []string{"payment", "subscription", "setup"}
	validPaymentStatus  = []string{"paid", "unpaid", "no_payment_required"}
	validSessionStatus  = []string{"complete", "open", "expired"}
	errSessionIDMissing = errors.New("session id is required")
)

// validate reports what is wrong with s, if anything. It is the same check
// for PutSession (which panics) and POST /_fake/sessions (which answers 400).
func (s Session) validate() error {
	if s.ID == "" {
		return errSessionIDMissing
	}
	if err := oneOf("mode", s.Mode, validModes); err != nil {
		return err
	}
	if err := oneOf("payment_status", s.PaymentStatus, validPaymentStatus); err != nil {
		return err
	}
	if err := oneOf("status", s.Status, validSessionStatus); err != nil {
		return err
	}
	if s.Currency != "" && !isCurrencyCode(s.Currency) {
		return fmt.Errorf("currency %q is not a lower-case ISO code like usd", s.Currency)
	}
	for i, it := range s.Items {
		if it.PriceID == "" {
			return fmt.Errorf("items[%d]: price_id is required", i)
		}
		if it.Quantity < 0 {
			return fmt.Errorf("items[%d]: quantity must not be negative", i)
		}
		if it.UnitAmount < 0 {
			return fmt.Errorf("items[%d]: unit_amount must not be negative", i)
		}
	}
	return nil
}

func oneOf(field, v string, allowed []string) error {
	if v == "" {
		return nil
	}
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s %q is not one of %s", field, v, strings.Join(allowed, ", "))
}

// LineItemID is the ID PutSession gives the index-th (0-based) line item of
// session sessionID. It is stable, so a test can predict it, and unique
// across sessions, as Stripe's are.
func LineItemID(sessionID string, index int) string {
	return "li_" + strings.TrimPrefix(sessionID, "cs_") + "_" + strconv.Itoa(index+1)
}

// sessionObjects renders s as a checkout.session object and its line items,
// in the shape of API version 2023-10-16.
func sessionObjects(s Session, now time.Time) (map[string]any, []map[string]any) {
	created := now.Unix()
	currency := withDefault(s.Currency, defaultCurrency)
	items := make([]map[string]any, 0, len(s.Items))
	var total int64
	for i, it := range s.Items {
		li := lineItemObject(s.ID, i, it, currency, created)
		total += li["amount_total"].(int64)
		items = append(items, li)
	}

	customFields := []any{}
	if s.DiscordID != "" {
		customFields = append(customFields, map[string]any{
			"key":      "discord_id",
			"label":    map[string]any{"type": "custom", "custom": "Discord ID"},
			"optional": false,
			"type":     "text",
			"text": map[string]any{
				"maximum_length": nil,
				"minimum_length": nil,
				"value":          s.DiscordID,
			},
		})
	}

	metadata := map[string]any{}
	for k, v := range s.Metadata {
		metadata[k] = v
	}

	session := map[string]any{
		"id":                  s.ID,
		"object":              "checkout.session",
		"mode":                withDefault(s.Mode, "payment"),
		"payment_status":      withDefault(s.PaymentStatus, "paid"),
		"status":              withDefault(s.Status, "complete"),
		"customer":            nullable(s.Customer),
		"customer_email":      nullable(s.CustomerEmail),
		"customer_creation":   "if_required",
		"payment_intent":      nullable(s.PaymentIntent),
		"subscription":        nullable(s.Subscription),
		"invoice":             nullable(s.Invoice),
		"custom_fields":       customFields,
		"metadata":            metadata,
		"livemode":            false,
		"created":             created,
		"expires_at":          created + int64((24 * time.Hour).Seconds()),
		"currency":            currency,
		"amount_subtotal":     total,
		"amount_total":        total,
		"client_reference_id": nil,
		"locale":              nil,
		"payment_method_types": []any{
			"card",
		},
		"success_url": "https://example.com/success?session_id={CHECKOUT_SESSION_ID}",
		"cancel_url":  nil,
		"ui_mode":     "hosted",
		"url":         nil,
		"customer_details": map[string]any{
			"address":    nil,
			"email":      nullable(s.CustomerEmail),
			"name":       nil,
			"phone":      nil,
			"tax_exempt": "none",
			"tax_ids":    []any{},
		},
		"total_details": map[string]any{
			"amount_discount": 0,
			"amount_shipping": 0,
			"amount_tax":      0,
		},
	}
	return session, items
}

func lineItemObject(sessionID string, index int, it Item, currency string, created int64) map[string]any {
	unit := it.UnitAmount
	if unit == 0 {
		unit = defaultUnitAmount
	}
	qty := it.Quantity
	if qty == 0 {
		qty = 1
	}
	amount := unit * qty

	priceType := "one_time"
	var recurring any
	if it.Recurring {
		priceType = "recurring"
		recurring = map[string]any{
			"aggregate_usage": nil,
			"interval":        "month",
			"interval_count":  1,
			"usage_type":      "licensed",
		}
	}

	return map[string]any{
		"id":              LineItemID(sessionID, index),
		"object":          "item",
		"amount_discount": int64(0),
		"amount_subtotal": amount,
		"amount_tax":      int64(0),
		"amount_total":    amount,
		"currency":        currency,
		"description":     withDefault(it.Description, "Fake product "+it.PriceID),
		"quantity":        qty,
		"price": map[string]any{
			"id":                  it.PriceID,
			"object":              "price",
			"active":              true,
			"billing_scheme":      "per_unit",
			"created":             created,
			"currency":            currency,
			"custom_unit_amount":  nil,
			"livemode":            false,
			"lookup_key":          nil,
			"metadata":            map[string]any{},
			"nickname":            nil,
			"product":             "prod_" + strings.TrimPrefix(it.PriceID, "price_"),
			"recurring":           recurring,
			"tax_behavior":        "unspecified",
			"tiers_mode":          nil,
			"transform_quantity":  nil,
			"type":                priceType,
			"unit_amount":         unit,
			"unit_amount_decimal": strconv.FormatInt(unit, 10),
		},
	}
}

func withDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// nullable renders an empty string as JSON null, as Stripe does for unset
// IDs and optional strings.
func nullable(v string) any {
	if v == "" {
		return nil
	}
	return v
}

// isCurrencyCode is whether c looks like a currency as Stripe writes one:
// three lower-case letters.
func isCurrencyCode(c string) bool {
	if len(c) != 3 {
		return false
	}
	for _, r := range c {
		if r < 'a' || r > 'z' {
			return false
		}
	}
	return true
}
