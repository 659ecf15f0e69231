package stripefake_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/stripeapi/stripefake"
)

func TestPricesDecodeIntoStripeGo(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	f.PutPrice(stripefake.Price{ID: "price_once", Active: true})
	f.PutPrice(stripefake.Price{ID: "price_year", Active: false, Interval: "year", UnitAmount: 9900})

	var once, year stripe.Price
	a := get(t, srv, key, "/v1/prices/price_once")
	require.Equal(t, http.StatusOK, a.status)
	require.NoError(t, json.Unmarshal(a.body, &once))
	require.True(t, once.Active)
	require.Nil(t, once.Recurring)
	require.Equal(t, stripe.PriceTypeOneTime, once.Type)

	require.NoError(t, json.Unmarshal(get(t, srv, key, "/v1/prices/price_year").body, &year))
	require.False(t, year.Active)
	require.Equal(t, stripe.PriceTypeRecurring, year.Type)
	require.Equal(t, stripe.PriceRecurringIntervalYear, year.Recurring.Interval)
	require.EqualValues(t, 9900, year.UnitAmount)

	a = get(t, srv, key, "/v1/prices/price_nope")
	require.Equal(t, http.StatusNotFound, a.status)
	require.Contains(t, string(a.body), "resource_missing")
	require.Equal(t, http.StatusUnauthorized, get(t, srv, "sk_test_other0000000000", "/v1/prices/price_once").status)
}

func TestWebhookEndpointsListNewestFirstAndPage(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	f.PutWebhookEndpoint(stripefake.WebhookEndpoint{URL: "https://a.example/hook", APIVersion: "2023-10-16",
		EnabledEvents: []string{"invoice.paid"}})
	f.PutWebhookEndpoint(stripefake.WebhookEndpoint{ID: "we_b", URL: "https://b.example/hook", Status: "disabled",
		EnabledEvents: []string{"*"}})

	var list stripe.WebhookEndpointList
	a := get(t, srv, key, "/v1/webhook_endpoints?limit=1")
	require.Equal(t, http.StatusOK, a.status)
	require.NoError(t, json.Unmarshal(a.body, &list))
	require.True(t, list.HasMore)
	require.Len(t, list.Data, 1)
	b := list.Data[0]
	require.Equal(t, "we_b", b.ID)
	require.Equal(t, "disabled", b.Status)
	require.Empty(t, b.APIVersion, "no version: the account's default, served as null")
	require.NotContains(t, string(a.body), "secret", "a listed endpoint never shows its signing secret")

	require.NoError(t, json.Unmarshal(get(t, srv, key, "/v1/webhook_endpoints?starting_after=we_b").body, &list))
	require.False(t, list.HasMore)
	require.Len(t, list.Data, 1)
	require.Equal(t, "https://a.example/hook", list.Data[0].URL)
	require.Equal(t, "2023-10-16", list.Data[0].APIVersion)
	require.Equal(t, "enabled", list.Data[0].Status)
	require.Equal(t, []string{"invoice.paid"}, list.Data[0].EnabledEvents)

	require.Equal(t, http.StatusBadRequest, get(t, srv, key, "/v1/webhook_endpoints?url=x").status, "unknown parameter")
}

func TestFakeObjectsHookStoresWhatTheAPIServes(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	post := func(path, body string) (int, string) {
		res, err := srv.Client().Post(srv.URL+path, "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res.StatusCode, string(b)
	}
	code, body := post("/_fake/objects/invoice/in_hook", `{"subscription":"sub_1","status":"paid",
		"lines":[{"type":"subscription","period":{"start":1,"end":2}}]}`)
	require.Equal(t, http.StatusCreated, code, body)

	var inv stripe.Invoice
	require.NoError(t, json.Unmarshal(get(t, srv, key, "/v1/invoices/in_hook").body, &inv))
	require.Equal(t, "sub_1", inv.Subscription.ID)
	require.Len(t, inv.Lines.Data, 1)
	require.EqualValues(t, 2, inv.Lines.Data[0].Period.End)

	for path, bad := range map[string]string{
		"/_fake/objects/nonsense/x_1":  `{}`,
		"/_fake/objects/charge/ch_1":   `[1]`,
		"/_fake/objects/dispute/dp_1":  `{} {}`,
		"/_fake/objects/invoice/in_2":  `{"lines":"no"}`,
		"/_fake/objects/charge/ch_nul": `null`,
	} {
		code, body := post(path, bad)
		require.Equal(t, http.StatusBadRequest, code, path+": "+body)
	}
	require.Equal(t, http.StatusNotFound, get(t, srv, key, "/v1/charges/ch_1").status, "nothing stored by a refused call")
}

func TestSubscriptionPauseCollectionDecodesIntoStripeGo(t *testing.T) {
	t.Parallel()
	f := stripefake.New(key)
	srv := serve(t, f)
	items := []stripefake.SubscriptionItem{{PriceID: "price_month", Quantity: 1}}
	f.PutSubscription(stripefake.Subscription{ID: "sub_running", Items: items})
	f.PutSubscription(stripefake.Subscription{ID: "sub_paused", PauseCollection: "void", Items: items})
	f.PutSubscription(stripefake.Subscription{ID: "sub_resumes", PauseCollection: "keep_as_draft", PauseResumesAt: 1700000000, Items: items})

	raw := get(t, srv, key, "/v1/subscriptions/sub_running")
	require.Equal(t, http.StatusOK, raw.status)
	require.Contains(t, string(raw.body), `"pause_collection":null`, "not paused: null, as Stripe serves it")
	var running, paused, resumes stripe.Subscription
	require.NoError(t, json.Unmarshal(raw.body, &running))
	require.Nil(t, running.PauseCollection)

	raw = get(t, srv, key, "/v1/subscriptions/sub_paused")
	require.Contains(t, string(raw.body), `"resumes_at":null`)
	require.NoError(t, json.Unmarshal(raw.body, &paused))
	require.NotNil(t, paused.PauseCollection)
	require.Equal(t, stripe.SubscriptionPauseCollectionBehaviorVoid, paused.PauseCollection.Behavior)
	require.Zero(t, paused.PauseCollection.ResumesAt)
	require.Equal(t, stripe.SubscriptionStatusActive, paused.Status, "pausing collection leaves the status")

	require.NoError(t, json.Unmarshal(get(t, srv, key, "/v1/subscriptions/sub_resumes").body, &resumes))
	require.Equal(t, stripe.SubscriptionPauseCollectionBehaviorKeepAsDraft, resumes.PauseCollection.Behavior)
	require.EqualValues(t, 1700000000, resumes.PauseCollection.ResumesAt)

	require.Panics(t, func() {
		f.PutSubscription(stripefake.Subscription{ID: "sub_bad", PauseCollection: "stop", Items: items})
	})
}
