package outbound

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"fulfiller/internal/shop"
)

// Event is the body of a webhook: what happened, to which order, once. ID
// is the same on every attempt and replay of its delivery, so a receiver
// that remembers the IDs it handled handles each event once.
type Event struct {
	ID      string    `json:"id"`
	Type    EventType `json:"type"`
	Created int64     `json:"created"`
	Data    Data      `json:"data"`
}

// Data is what an event says. A full license key is never in it: the last
// four characters name a key among the order's, and the order reference
// finds the rest through the admin API.
type Data struct {
	OrderRef string `json:"order_ref,omitempty"`
	Product  string `json:"product,omitempty"`
	// Amount is the order's total in Currency's minor unit (cents).
	Amount   *int64 `json:"amount,omitempty"`
	Currency string `json:"currency,omitempty"`
	// Email is the buyer's address: the shop's backend knows its buyers.
	// Never posted to Discord.
	Email string `json:"email,omitempty"`
	// Keys are the last four characters of the keys concerned.
	Keys []string `json:"key_last4,omitempty"`
	// Reissue: the key replaced and its replacement.
	OldKey string `json:"old_key_last4,omitempty"`
	NewKey string `json:"new_key_last4,omitempty"`
	// FailureCode and Reason say why an order failed; Source and Reason
	// why keys were revoked (dispute, refund, early fraud warning, support).
	FailureCode string `json:"failure_code,omitempty"`
	Source      string `json:"source,omitempty"`
	Reason      string `json:"reason,omitempty"`
	// SubscriptionID is the Stripe subscription that ended.
	SubscriptionID string `json:"subscription_id,omitempty"`
	// ExpiresAt is when the key (key.expiring) or the subscription's
	// keys (subscription.ended) stop working, unix seconds.
	ExpiresAt *int64 `json:"expires_at,omitempty"`
	// PriceID, Stock and Target describe a price whose stock ran low.
	PriceID string `json:"price_id,omitempty"`
	Stock   *int   `json:"stock,omitempty"`
	Target  *int   `json:"target,omitempty"`
}

// NewEventID is a fresh event ID: "evt_" and 24 random hex digits.
func NewEventID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "evt_" + hex.EncodeToString(b[:])
}

// KeyLast4 is the part of a license key an event may carry: its last four
// characters, or nothing of a key too short for that to be safe.
func KeyLast4(key string) string {
	if utf8.RuneCountInString(key) <= 8 {
		return ""
	}
	r := []rune(key)
	return string(r[len(r)-4:])
}

// WebhookBody is the JSON posted to the shop's backend.
func WebhookBody(e Event) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encoding event %s: %w", e.ID, err)
	}
	return b, nil
}

// Discord colours of the embeds: green for a sale, red for a failure or a
// revocation, amber for a warning.
const (
	colorGood    = 0x2e9d5b
	colorBad     = 0xd13b3b
	colorWarning = 0xe0a526
)

// DiscordBody is the execute-webhook JSON of e for a Discord channel: one
// embed naming the order by reference, its product and amount. It carries
// no email, key, session ID or link: a channel is read by many.
func DiscordBody(e Event) ([]byte, error) {
	type field struct {
		Name   string `json:"name"`
		Value  string `json:"value"`
		Inline bool   `json:"inline"`
	}
	type embed struct {
		Title     string  `json:"title"`
		Color     int     `json:"color"`
		Fields    []field `json:"fields"`
		Timestamp string  `json:"timestamp"`
		Footer    struct {
			Text string `json:"text"`
		} `json:"footer"`
	}
	d := e.Data
	em := embed{Timestamp: time.Unix(e.Created, 0).UTC().Format(time.RFC3339)}
	em.Footer.Text = e.ID
	add := func(name, value string) {
		if value != "" {
			em.Fields = append(em.Fields, field{Name: name, Value: truncate(value, 1024), Inline: true})
		}
	}
	switch e.Type {
	case OrderFulfilled:
		em.Title, em.Color = "New sale", colorGood
	case OrderFailed:
		em.Title, em.Color = "Order failed", colorBad
	case KeyRevoked:
		em.Title, em.Color = "Keys revoked", colorBad
	case StockLow:
		em.Title, em.Color = "Stock running low", colorWarning
	default:
		em.Title, em.Color = string(e.Type), colorWarning
	}
	add("Order", d.OrderRef)
	add("Product", d.Product)
	if d.Amount != nil {
		add("Amount", shop.FormatAmount(*d.Amount, d.Currency))
	}
	add("Failure", d.FailureCode)
	add("Cause", d.Source)
	add("Price", d.PriceID)
	if d.Stock != nil && d.Target != nil {
		add("Stock", strconv.Itoa(*d.Stock)+" of "+strconv.Itoa(*d.Target))
	}
	body := struct {
		Embeds          []embed `json:"embeds"`
		AllowedMentions struct {
			Parse []string `json:"parse"`
		} `json:"allowed_mentions"`
	}{Embeds: []embed{em}}
	body.AllowedMentions.Parse = []string{}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encoding the Discord message of event %s: %w", e.ID, err)
	}
	return b, nil
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
