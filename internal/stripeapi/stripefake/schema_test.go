package stripefake_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/stripeapi/stripefake"
)

// stripeSpec loads the OpenAPI spec of API version 2023-10-16 that Stripe's
// stripe-mock v0.183.0 carries, from the module cache where make test and
// .ci/run's go install put it. Without it the test is skipped, except in
// CI, where it fails.
func stripeSpec(t *testing.T) map[string]any {
	t.Helper()
	cache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	require.NoError(t, err)
	path := filepath.Join(strings.TrimSpace(string(cache)), "github.com", "stripe", "stripe-mock@v0.183.0", "embedded", "openapi", "spec3.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		why := "Stripe's OpenAPI spec is not in the module cache: go install github.com/stripe/stripe-mock@v0.183.0"
		if os.Getenv("CI") != "" {
			t.Fatalf("%s (.ci/run installs it): %v", why, err)
		}
		t.Skip(why)
	}
	var spec map[string]any
	require.NoError(t, json.Unmarshal(raw, &spec))
	return spec
}

// schemaOf returns components.schemas[name].
func schemaOf(t *testing.T, spec map[string]any, name string) map[string]any {
	t.Helper()
	schemas := spec["components"].(map[string]any)["schemas"].(map[string]any)
	s, ok := schemas[name].(map[string]any)
	require.True(t, ok, "the spec has schema %s", name)
	return s
}

// conform lists where value does not fit schema: a field Stripe does not
// send, or one of another type. Fields Stripe sends that the stand-in
// leaves out are fine (the service reads only some); a field the stand-in
// has must be one Stripe has, with Stripe's type, all the way down.
func conform(spec map[string]any, schema map[string]any, value any, path string) []string {
	if ref, ok := schema["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		return conform(spec, spec["components"].(map[string]any)["schemas"].(map[string]any)[name].(map[string]any), value, path)
	}
	if value == nil {
		if n, _ := schema["nullable"].(bool); n {
			return nil
		}
		return []string{path + ": null, which Stripe never sends here"}
	}
	for _, key := range []string{"anyOf", "oneOf"} {
		if alts, ok := schema[key].([]any); ok {
			var best []string
			for _, alt := range alts {
				problems := conform(spec, alt.(map[string]any), value, path)
				if len(problems) == 0 {
					return nil
				}
				if best == nil || len(problems) < len(best) {
					best = problems
				}
			}
			if n, _ := schema["nullable"].(bool); n && value == nil {
				return nil
			}
			return best
		}
	}
	typ, _ := schema["type"].(string)
	switch v := value.(type) {
	case map[string]any:
		if typ != "" && typ != "object" {
			return []string{fmt.Sprintf("%s: an object where Stripe sends %s", path, typ)}
		}
		props, _ := schema["properties"].(map[string]any)
		extra, _ := schema["additionalProperties"].(map[string]any)
		var problems []string
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ps, ok := props[k].(map[string]any)
			switch {
			case ok:
				problems = append(problems, conform(spec, ps, v[k], path+"."+k)...)
			case extra != nil:
				problems = append(problems, conform(spec, extra, v[k], path+"."+k)...)
			case props == nil:
			default:
				problems = append(problems, path+"."+k+": a field Stripe does not send")
			}
		}
		return problems
	case []any:
		if typ != "array" {
			return []string{fmt.Sprintf("%s: an array where Stripe sends %s", path, typ)}
		}
		items, _ := schema["items"].(map[string]any)
		var problems []string
		for i, it := range v {
			problems = append(problems, conform(spec, items, it, fmt.Sprintf("%s[%d]", path, i))...)
		}
		return problems
	case string:
		if typ != "string" {
			return []string{fmt.Sprintf("%s: a string where Stripe sends %s", path, typ)}
		}
		if enum, ok := schema["enum"].([]any); ok {
			for _, e := range enum {
				if e == v {
					return nil
				}
			}
			return []string{fmt.Sprintf("%s: %q is not one of Stripe's values %v", path, v, enum)}
		}
	case float64:
		if typ != "integer" && typ != "number" {
			return []string{fmt.Sprintf("%s: a number where Stripe sends %s", path, typ)}
		}
		if typ == "integer" && v != float64(int64(v)) {
			return []string{fmt.Sprintf("%s: %v where Stripe sends an integer", path, v)}
		}
	case bool:
		if typ != "boolean" {
			return []string{fmt.Sprintf("%s: a boolean where Stripe sends %s", path, typ)}
		}
	}
	return nil
}

func getJSON(t *testing.T, base, path string) any {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer sk_test_schema")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var v any
	require.NoError(t, json.Unmarshal(body, &v))
	return v
}

// TestStandInObjectsAreStripesObjects checks the objects the Stripe
// stand-in serves against Stripe's own OpenAPI spec of 2023-10-16: every
// field it sends is one Stripe sends, of Stripe's type. A field the
// service reads that Stripe does not send, or types differently, would
// pass every test against the stand-in and fail against Stripe.
func TestStandInObjectsAreStripesObjects(t *testing.T) {
	t.Parallel()
	spec := stripeSpec(t)
	f := stripefake.New("sk_test_schema")
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)

	f.PutSession(stripefake.Session{ID: "cs_test_schema", Mode: "subscription", CustomerEmail: "buyer@example.com",
		Customer: "cus_schema", Subscription: "sub_schema", Invoice: "in_first", DiscordID: "123456789012345678",
		Items: []stripefake.Item{{PriceID: "price_month", Quantity: 2, Recurring: true}, {PriceID: "price_once", Quantity: 1}}})
	f.PutSubscription(stripefake.Subscription{ID: "sub_paused", Customer: "cus_schema", CurrentPeriodStart: 1_800_000_000,
		CurrentPeriodEnd: 1_802_592_000, PauseCollection: "void", PauseResumesAt: 1_803_000_000,
		Items: []stripefake.SubscriptionItem{{PriceID: "price_month", Quantity: 1}}})

	for _, c := range []struct{ path, schema string }{
		{"/v1/checkout/sessions/cs_test_schema", "checkout.session"},
		{"/v1/subscriptions/sub_schema", "subscription"},
		{"/v1/subscriptions/sub_paused", "subscription"},
	} {
		got := getJSON(t, srv.URL, c.path)
		require.Empty(t, conform(spec, schemaOf(t, spec, c.schema), got, c.schema), "%s", c.path)
	}
	// The objects the service's tests register, as they register them.
	f.PutObject(stripefake.KindCharge, "ch_schema", map[string]any{"object": "charge", "payment_intent": "pi_schema",
		"invoice": "in_renewal", "amount": 1000, "paid": true, "amount_refunded": 1000, "refunded": true})
	f.PutObject(stripefake.KindDispute, "dp_schema", map[string]any{"object": "dispute", "charge": "ch_schema",
		"payment_intent": "pi_schema", "status": "needs_response", "reason": "fraudulent", "amount": 1000})
	f.PutObject(stripefake.KindInvoice, "in_renewal", map[string]any{"object": "invoice", "subscription": "sub_schema",
		"billing_reason": "subscription_cycle", "status": "paid", "paid": true, "customer": "cus_schema",
		"payment_intent": "pi_schema", "charge": "ch_schema",
		"lines": []any{map[string]any{"object": "line_item", "type": "subscription", "proration": false,
			"subscription": "sub_schema", "amount": 1000, "quantity": 2,
			"price":  map[string]any{"id": "price_month", "object": "price"},
			"period": map[string]any{"start": 1_802_592_000, "end": 1_805_184_000}}}})
	for _, c := range []struct{ path, schema string }{
		{"/v1/charges/ch_schema", "charge"},
		{"/v1/disputes/dp_schema", "dispute"},
		{"/v1/invoices/in_renewal", "invoice"},
	} {
		got := getJSON(t, srv.URL, c.path)
		require.Empty(t, conform(spec, schemaOf(t, spec, c.schema), got, c.schema), "%s", c.path)
	}
	items := getJSON(t, srv.URL, "/v1/checkout/sessions/cs_test_schema/line_items").(map[string]any)["data"].([]any)
	require.NotEmpty(t, items)
	for _, it := range items {
		require.Empty(t, conform(spec, schemaOf(t, spec, "item"), it, "item"))
	}
}
