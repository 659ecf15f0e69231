package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"fulfiller/internal/httpapi"
	"fulfiller/internal/stripeapi/stripefake"
)

// simulatedPeriod is the length of the subscription periods the stand-in
// starts and simulated renewals pay for.
const simulatedPeriod = 30 * 24 * time.Hour

// lifecycleSteps are what can follow a simulated checkout, each with what
// the order should look like once the service has acted on it (under the
// default policy settings).
var lifecycleSteps = map[string]struct {
	about string
	done  func(before, now httpapi.OrderJSON, s *simulation) bool
}{
	"renewal":     {"a paid renewal invoice (invoice.paid); subscriptions only", renewed},
	"dispute":     {"a chargeback (charge.dispute.created)", keysAre("revoked", "blacklisted")},
	"dispute-won": {"the chargeback closed in the shop's favour (charge.dispute.closed, won)", keysAre("fulfilled", "active")},
	"refund":      {"a full refund (charge.refunded)", keysAre("revoked", "blacklisted", "deleted")},
	"cancel":      {"the subscription cancelled in Stripe (customer.subscription.deleted); subscriptions only", ending},
}

// simulation is one lifecycle step against a running service and the
// Stripe stand-in.
type simulation struct {
	service, stripeBase, secret, stripeKey string
	session                                stripe.CheckoutSession
	periodEnd                              int64 // renewal: the end of the period paid for
}

// cmdSimulateLifecycle plays what happens after a simulated checkout:
// it registers with the Stripe stand-in the objects the service reads back
// (invoice, charge, dispute, cancelled subscription), sends the signed
// event Stripe would send, and prints what became of the order's keys.
func cmdSimulateLifecycle(ctx context.Context, step string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulate "+step, flag.ContinueOnError)
	fs.SetOutput(stderr)
	session := fs.String("session", "", "the Checkout Session `ID` (cs_...) that simulate checkout printed (required)")
	service := fs.String("url", "http://localhost"+portOf(orDefault(getenv("LISTEN_ADDR"), ":8080")), "base `URL` of the running service")
	stripeBase := fs.String("stripe", orDefault(getenv("STRIPE_API_BASE"), "http://"+devStripeAddr), "base `URL` of the Stripe stand-in that make run starts")
	secret := fs.String("secret", orDefault(firstSecret(getenv("STRIPE_WEBHOOK_SECRET")), devWebhookSecret), "the webhook signing `secret`")
	stripeKey := fs.String("stripe-key", orDefault(getenv("STRIPE_API_KEY"), devStripeKey), "the stand-in's API `key` (cancel calls Stripe's cancel route with it)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the keys to change")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if !strings.HasPrefix(*session, "cs_") || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "usage: fulfiller simulate %s --session cs_... (%s)\n", step, lifecycleSteps[step].about)
		return errUsage
	}
	s := &simulation{service: strings.TrimRight(*service, "/"), stripeBase: strings.TrimRight(*stripeBase, "/"),
		secret: *secret, stripeKey: *stripeKey}
	raw, err := httpDo(ctx, http.MethodGet, s.stripeBase+"/_fake/sessions/"+*session, "", nil)
	if err != nil {
		return fmt.Errorf("reading session %s from the Stripe stand-in at %s (made with `simulate checkout` against this `make run`?): %w", *session, s.stripeBase, err)
	}
	if err := json.Unmarshal(raw, &s.session); err != nil {
		return fmt.Errorf("decoding session %s from the Stripe stand-in: %w", *session, err)
	}
	before, err := getOrder(ctx, s.service+"/v1/orders/"+*session)
	if err != nil {
		return fmt.Errorf("reading order %s from %s (is the service running?): %w", *session, s.service, err)
	}
	if before.Status == "pending" {
		return fmt.Errorf("order %s is still pending: wait for its keys before simulating what follows", *session)
	}
	if step == "cancel" && before.Status == "revoked" {
		return fmt.Errorf("%s: a refund or dispute already ended its keys, so there is nothing for a cancelled subscription to end (simulate dispute-won restores the keys of a won dispute)", orderState(*session, before, nil))
	}

	eventType, object, err := s.prepare(ctx, step, before)
	if err != nil {
		return err
	}
	if err := s.send(ctx, eventType, object); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sent %s for %s\n", eventType, *session)

	start := time.Now()
	deadline := start.Add(*timeout)
	for {
		o, err := getOrder(ctx, s.service+"/v1/orders/"+*session)
		if err == nil && lifecycleSteps[step].done(before, o, s) {
			fmt.Fprintf(stdout, "order %s is %s after %s%s\n", o.CheckoutSessionID, o.Status,
				time.Since(start).Round(time.Millisecond), paidThrough(o))
			for _, k := range o.Keys {
				fmt.Fprintf(stdout, "  key %s  %s  %s%s\n", k.UserKey, k.Status, expiry(k), map[bool]string{true: "  ending"}[k.Ending])
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s the keys had not changed as %s should change them: %s (a policy setting such as REFUND_ACTION or DISPUTE_WON_ACTION may say otherwise, or an earlier step already ended the keys; the service log says what it did)", *timeout, step, orderState(*session, o, err))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// prepare registers what the service will read back for step and returns
// the event to send, with its data.object.
func (s *simulation) prepare(ctx context.Context, step string, before httpapi.OrderJSON) (string, any, error) {
	sub := ""
	if s.session.Subscription != nil {
		sub = s.session.Subscription.ID
	}
	if (step == "renewal" || step == "cancel") && sub == "" {
		return "", nil, fmt.Errorf("session %s is a one-off payment: %s needs one made with `simulate checkout --mode subscription`", s.session.ID, step)
	}
	suffix := strings.TrimPrefix(s.session.ID, "cs_")
	switch step {
	case "renewal":
		base := time.Now().Add(simulatedPeriod).Unix() // the end of the first period
		if before.PaidThrough != nil && *before.PaidThrough > base {
			base = *before.PaidThrough
		}
		s.periodEnd = base + int64(simulatedPeriod/time.Second)
		id := "in_" + randomToken(24)
		// One paid line per price, for as many seats as the order holds
		// keys of it, as Stripe's invoice of the subscription has.
		seats := map[string]int{}
		var prices []string
		for _, k := range before.Keys {
			if k.Ending {
				continue
			}
			if seats[k.PriceID] == 0 {
				prices = append(prices, k.PriceID)
			}
			seats[k.PriceID]++
		}
		var lines []map[string]any
		for _, price := range prices {
			lines = append(lines, map[string]any{
				"object": "line_item", "type": "subscription", "proration": false, "subscription": sub, "amount": 1000,
				"price": map[string]any{"id": price, "object": "price"}, "quantity": seats[price],
				"period": map[string]any{"start": s.periodEnd - int64(simulatedPeriod/time.Second), "end": s.periodEnd},
			})
		}
		inv := map[string]any{
			"object": "invoice", "subscription": sub, "billing_reason": "subscription_cycle", "status": "paid",
			"paid": true, "customer": customerID(s.session), "payment_intent": "pi_" + randomToken(24),
			"charge": "ch_" + randomToken(24), "lines": lines,
		}
		stored, err := s.put(ctx, stripefake.KindInvoice, id, inv)
		return "invoice.paid", stored, err
	case "dispute", "dispute-won":
		charge, err := s.putCharge(ctx, suffix, sub, 0)
		if err != nil {
			return "", nil, err
		}
		status, eventType := "needs_response", "charge.dispute.created"
		if step == "dispute-won" {
			status, eventType = "won", "charge.dispute.closed"
		}
		stored, err := s.put(ctx, stripefake.KindDispute, "dp_sim_"+suffix, map[string]any{
			"object": "dispute", "charge": charge, "payment_intent": paymentIntentID(s.session),
			"status": status, "reason": "fraudulent", "amount": 1000,
		})
		return eventType, stored, err
	case "refund":
		charge, err := s.putCharge(ctx, suffix, sub, 1000)
		if err != nil {
			return "", nil, err
		}
		stored, err := httpDo(ctx, http.MethodGet, s.stripeBase+"/v1/charges/"+charge, s.stripeKey, nil)
		return "charge.refunded", json.RawMessage(stored), err
	case "cancel":
		cancelled, err := httpDo(ctx, http.MethodDelete, s.stripeBase+"/v1/subscriptions/"+sub, s.stripeKey, nil)
		if err != nil {
			return "", nil, fmt.Errorf("the Stripe stand-in did not cancel subscription %s (already cancelled?); %s: %w", sub, orderState(s.session.ID, before, nil), err)
		}
		return "customer.subscription.deleted", json.RawMessage(cancelled), nil
	}
	return "", nil, fmt.Errorf("unknown step %q", step)
}

// putCharge registers the session's charge of 1000 (refunded as given):
// a one-off payment's charge belongs to its payment intent, a
// subscription's to its first invoice, which names the subscription.
func (s *simulation) putCharge(ctx context.Context, suffix, sub string, refunded int64) (string, error) {
	id := "ch_sim_" + suffix
	charge := map[string]any{"object": "charge", "amount": 1000, "paid": true,
		"amount_refunded": refunded, "refunded": refunded >= 1000}
	if pi := paymentIntentID(s.session); pi != "" {
		charge["payment_intent"] = pi
	}
	if sub != "" && s.session.Invoice != nil {
		if _, err := s.put(ctx, stripefake.KindInvoice, s.session.Invoice.ID, map[string]any{
			"object": "invoice", "subscription": sub, "status": "paid", "paid": true, "customer": customerID(s.session),
			"billing_reason": "subscription_create",
		}); err != nil {
			return "", err
		}
		charge["invoice"] = s.session.Invoice.ID
	}
	_, err := s.put(ctx, stripefake.KindCharge, id, charge)
	return id, err
}

// put registers an object with the stand-in and returns it as served.
func (s *simulation) put(ctx context.Context, kind, id string, obj map[string]any) (json.RawMessage, error) {
	stored, err := httpDo(ctx, http.MethodPost, s.stripeBase+"/_fake/objects/"+kind+"/"+id, "", obj)
	if err != nil {
		return nil, fmt.Errorf("registering %s %s with the Stripe stand-in at %s: %w", kind, id, s.stripeBase, err)
	}
	if kind == stripefake.KindInvoice {
		// The event carries the invoice with its lines embedded, as Stripe's does.
		return httpDo(ctx, http.MethodGet, s.stripeBase+"/v1/invoices/"+id, s.stripeKey, nil)
	}
	return stored, nil
}

// send posts a signed event of eventType carrying object.
func (s *simulation) send(ctx context.Context, eventType string, object any) error {
	event, err := json.Marshal(map[string]any{
		"id": "evt_" + randomToken(24), "object": "event", "api_version": stripe.APIVersion,
		"created": time.Now().Unix(), "type": eventType, "livemode": false,
		"pending_webhooks": 1, "data": map[string]any{"object": object},
	})
	if err != nil {
		return err
	}
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: event, Secret: s.secret})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.service+"/webhooks/stripe", bytes.NewReader(event))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", signed.Header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("sending the webhook to %s (is the service running?): %w", s.service, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the service answered the %s webhook with %d: %s", eventType, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

// httpDo sends a request (JSON body when v is not nil, the stand-in's
// API key when apiKey is set) and returns the body of a 2xx answer.
func httpDo(ctx context.Context, method, url, apiKey string, v any) ([]byte, error) {
	var body io.Reader
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body) //nolint:gosec // G704: the local service the developer pointed simulate at
	if err != nil {
		return nil, err
	}
	if v != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := http.DefaultClient.Do(req) //nolint:gosec // G704: the local service the developer pointed simulate at
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(out)))
	}
	return out, nil
}

func keysAre(orderStatus string, keyStatuses ...string) func(before, now httpapi.OrderJSON, _ *simulation) bool {
	return func(_, now httpapi.OrderJSON, _ *simulation) bool {
		if now.Status != orderStatus || len(now.Keys) == 0 {
			return false
		}
		for _, k := range now.Keys {
			if !contains(keyStatuses, k.Status) {
				return false
			}
		}
		return true
	}
}

func renewed(_, now httpapi.OrderJSON, s *simulation) bool {
	if now.PaidThrough == nil || *now.PaidThrough < s.periodEnd {
		return false
	}
	for _, k := range now.Keys {
		if k.Status == "active" && (k.AuthExpire == nil || (*k.AuthExpire != -1 && *k.AuthExpire < s.periodEnd)) {
			return false
		}
	}
	return true
}

func ending(_, now httpapi.OrderJSON, _ *simulation) bool {
	for _, k := range now.Keys {
		if !k.Ending {
			return false
		}
	}
	return len(now.Keys) > 0
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func customerID(s stripe.CheckoutSession) string {
	if s.Customer != nil {
		return s.Customer.ID
	}
	return ""
}

func paymentIntentID(s stripe.CheckoutSession) string {
	if s.PaymentIntent != nil {
		return s.PaymentIntent.ID
	}
	return ""
}

func paidThrough(o httpapi.OrderJSON) string {
	if o.PaidThrough == nil {
		return ""
	}
	return ", paid through " + time.Unix(*o.PaidThrough, 0).UTC().Format(time.DateTime)
}

func expiry(k httpapi.KeyJSON) string {
	switch {
	case k.AuthExpire == nil:
		return fmt.Sprintf("%d days from first use", k.KeyDays)
	case *k.AuthExpire == -1:
		return "never expires"
	}
	return "expires " + time.Unix(*k.AuthExpire, 0).UTC().Format(time.DateTime)
}
