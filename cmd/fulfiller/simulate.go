package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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

// cmdSimulate plays a customer paying on Stripe Checkout against a running
// local service: it registers the session with the Stripe stand-in, sends a
// signed checkout.session.completed event and waits for the keys.
func cmdSimulate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		if _, ok := lifecycleSteps[args[0]]; ok {
			return cmdSimulateLifecycle(ctx, args[0], args[1:], getenv, stdout, stderr)
		}
	}
	if len(args) == 0 || args[0] != "checkout" {
		fmt.Fprintln(stderr, "usage: fulfiller simulate checkout --price ID [--quantity N] [--email E] [--discord ID]")
		fmt.Fprintln(stderr, "       fulfiller simulate renewal|dispute|dispute-won|refund|cancel --session cs_...")
		return errUsage
	}
	fs := flag.NewFlagSet("simulate checkout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	price := fs.String("price", "", "`ID` of the Stripe price to buy, one of the catalog's (required)")
	quantity := fs.Int64("quantity", 1, "how many units to buy; each gets one key")
	email := fs.String("email", "buyer@example.com", "the customer's `email` address")
	discord := fs.String("discord", "", "the Discord `ID` the buyer entered in the checkout's discord_id field")
	mode := fs.String("mode", "payment", "payment (a one-off purchase) or subscription")
	service := fs.String("url", "http://localhost"+portOf(orDefault(getenv("LISTEN_ADDR"), ":8080")), "base `URL` of the running service")
	stripeBase := fs.String("stripe", orDefault(getenv("STRIPE_API_BASE"), "http://"+devStripeAddr), "base `URL` of the Stripe stand-in that make run starts")
	secret := fs.String("secret", orDefault(firstSecret(getenv("STRIPE_WEBHOOK_SECRET")), devWebhookSecret), "the webhook signing `secret`")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the keys")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	if *price == "" || *quantity < 1 || (*mode != "payment" && *mode != "subscription") {
		fmt.Fprintln(stderr, "simulate checkout: --price is required, --quantity at least 1, --mode payment or subscription")
		return errUsage
	}

	sess := stripefake.Session{
		ID: "cs_test_" + randomToken(24), Mode: *mode, PaymentStatus: "paid", Status: "complete",
		CustomerEmail: *email, Customer: "cus_" + randomToken(14), DiscordID: *discord,
		Items: []stripefake.Item{{PriceID: *price, Quantity: *quantity, Recurring: *mode == "subscription"}},
	}
	if *mode == "payment" {
		sess.PaymentIntent = "pi_" + randomToken(24)
	} else {
		sess.Subscription = "sub_" + randomToken(24)
		sess.Invoice = "in_" + randomToken(24)
	}
	object, err := postJSON(ctx, strings.TrimRight(*stripeBase, "/")+"/_fake/sessions", sess)
	if err != nil {
		return fmt.Errorf("registering the session with the Stripe stand-in at %s (is `make run` running without STRIPE_API_KEY?): %w", *stripeBase, err)
	}
	event, err := json.Marshal(map[string]any{
		"id": "evt_" + randomToken(24), "object": "event", "api_version": stripe.APIVersion,
		"created": time.Now().Unix(), "type": "checkout.session.completed", "livemode": false,
		"pending_webhooks": 1, "data": map[string]any{"object": json.RawMessage(object)},
	})
	if err != nil {
		return err
	}
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: event, Secret: *secret})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(*service, "/")+"/webhooks/stripe", bytes.NewReader(event))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", signed.Header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("sending the webhook to %s (is the service running?): %w", *service, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the service answered the webhook with %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	fmt.Fprintf(stdout, "sent checkout.session.completed for %s (%d × %s)\n", sess.ID, *quantity, *price)

	start := time.Now()
	deadline := time.Now().Add(*timeout)
	for {
		o, err := getOrder(ctx, strings.TrimRight(*service, "/")+"/v1/orders/"+sess.ID)
		if err == nil && (o.Status == "fulfilled" || o.Status == "failed" || o.Status == "revoked") {
			fmt.Fprintf(stdout, "order %s is %s after %s\n", o.CheckoutSessionID, o.Status, time.Since(start).Round(time.Millisecond))
			for _, k := range o.Keys {
				days := fmt.Sprintf("%d days from first use", k.KeyDays)
				if k.KeyDays == 0 {
					days = "lifetime"
				}
				fmt.Fprintf(stdout, "  key %s  project %s  %s\n", k.UserKey, k.ProjectID, days)
			}
			if o.Status == "failed" {
				return fmt.Errorf("order failed; the service log says why (an unknown price?)")
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no keys after %s: %s; the service log says why, or wait longer with --timeout", *timeout, orderState(sess.ID, o, err))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func firstSecret(list string) string {
	first, _, _ := strings.Cut(list, ",")
	return strings.TrimSpace(first)
}

func postJSON(ctx context.Context, url string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(out)))
	}
	return out, nil
}

func getOrder(ctx context.Context, url string) (httpapi.OrderJSON, error) {
	var o httpapi.OrderJSON
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil) //nolint:gosec // G704: the local service the developer pointed simulate at
	if err != nil {
		return o, err
	}
	resp, err := http.DefaultClient.Do(req) //nolint:gosec // G704: the local service the developer pointed simulate at
	if err != nil {
		return o, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return o, fmt.Errorf("the service answered GET %s with %d: %s", req.URL.Path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
		return o, fmt.Errorf("decoding the service's answer to GET %s: %w", req.URL.Path, err)
	}
	return o, nil
}

func randomToken(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// orderState says in a sentence what state an order is in, from the last
// read of it (o) or why that read failed (err).
func orderState(id string, o httpapi.OrderJSON, err error) string {
	if err != nil {
		return fmt.Sprintf("the last read of order %s failed (%v)", id, err)
	}
	var order []string
	count := map[string]int{}
	for _, k := range o.Keys {
		st := k.Status
		if k.Ending {
			st += " (ending)"
		}
		if k.Suspended {
			st += " (suspended)"
		}
		if count[st] == 0 {
			order = append(order, st)
		}
		count[st]++
	}
	var parts []string
	for _, st := range order {
		parts = append(parts, fmt.Sprintf("%d %s", count[st], st))
	}
	state := fmt.Sprintf("order %s is %s", id, o.Status)
	switch {
	case len(parts) > 0:
		state += ", its keys " + strings.Join(parts, ", ")
	case o.KeysPending == 0:
		state += " and has no keys"
	}
	switch {
	case o.KeysPending > 0 && len(parts) > 0:
		state += fmt.Sprintf(", %d more still to deliver", o.KeysPending)
	case o.KeysPending > 0:
		state += fmt.Sprintf(", %d keys still to deliver", o.KeysPending)
	}
	return state
}
