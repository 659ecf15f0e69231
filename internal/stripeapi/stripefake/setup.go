package stripefake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// KindPrice is the kind of prices (GET /v1/prices/{id}), accepted by
// PutObject; PutPrice renders one in Stripe's shape.
const KindPrice = "price"

// Price describes a Stripe price in the terms a set-up check reads;
// PutPrice renders it as the object of API version 2023-10-16.
type Price struct {
	ID     string `json:"id"`
	Active bool   `json:"active"`
	// Interval is "" for a one-off price (type one_time), or "day",
	// "week", "month" or "year" for a recurring one.
	Interval string `json:"interval,omitempty"`
	// UnitAmount is in the currency's minor unit; 0 means 1000.
	UnitAmount int64 `json:"unit_amount,omitempty"`
}

// PutPrice adds or replaces the price p. It panics on a missing ID or an
// unknown interval: those are mistakes in the test.
func (f *Fake) PutPrice(p Price) {
	if p.ID == "" {
		panic("stripefake: PutPrice: price id is required")
	}
	if err := oneOf("interval", p.Interval, []string{"day", "week", "month", "year"}); err != nil {
		panic("stripefake: PutPrice: " + err.Error())
	}
	obj := lineItemObject("cs_price", 0, Item{PriceID: p.ID, Recurring: p.Interval != "", UnitAmount: p.UnitAmount},
		defaultCurrency, f.now().Unix())["price"].(map[string]any)
	obj["active"] = p.Active
	if p.Interval != "" {
		obj["recurring"].(map[string]any)["interval"] = p.Interval
	}
	f.put(KindPrice, p.ID, obj, nil)
}

// WebhookEndpoint describes a webhook endpoint of the account, as
// GET /v1/webhook_endpoints lists it.
type WebhookEndpoint struct {
	// ID defaults to "we_<n>".
	ID  string
	URL string
	// APIVersion is the version events are rendered in; "" renders null
	// (the account's default version), as Stripe does.
	APIVersion    string
	EnabledEvents []string
	// Status is "enabled" (the default) or "disabled".
	Status string
}

// PutWebhookEndpoint adds the endpoint e, after those added before (the
// list is served newest first, as Stripe does). It panics on a missing URL
// or an unknown status.
func (f *Fake) PutWebhookEndpoint(e WebhookEndpoint) {
	if e.URL == "" {
		panic("stripefake: PutWebhookEndpoint: url is required")
	}
	if err := oneOf("status", e.Status, []string{"enabled", "disabled"}); err != nil {
		panic("stripefake: PutWebhookEndpoint: " + err.Error())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if e.ID == "" {
		e.ID = fmt.Sprintf("we_fake%d", len(f.endpoints)+1)
	}
	events := append([]string{}, e.EnabledEvents...)
	f.endpoints = append(f.endpoints, normalize(map[string]any{
		"id": e.ID, "object": "webhook_endpoint", "url": e.URL, "api_version": nullable(e.APIVersion),
		"enabled_events": events, "status": withDefault(e.Status, "enabled"), "livemode": false,
		"created": f.now().Unix(), "description": nil, "metadata": map[string]any{}, "application": nil,
	}))
}

// listWebhookEndpoints serves GET /v1/webhook_endpoints, newest first,
// paged. The signing secret is never part of a listed endpoint, as with
// Stripe (it is shown once, at creation).
func (f *Fake) listWebhookEndpoints(w http.ResponseWriter, r *http.Request) {
	q, e := parseQuery(r, true)
	if e != nil {
		e.write(w)
		return
	}
	f.mu.Lock()
	all := slices.Clone(f.endpoints)
	maxPage := f.maxPageSize
	f.mu.Unlock()
	slices.Reverse(all)
	data, hasMore, e := page(all, objectID, q, maxPage)
	if e != nil {
		e.write(w)
		return
	}
	writeJSON(w, http.StatusOK, listEnvelope(data, hasMore, "/v1/webhook_endpoints", 0))
}

// fakePutObject serves POST /_fake/objects/{kind}/{id}: the body, a JSON
// object, is stored as PutObject stores it, so another process (a CLI
// simulating a renewal, a dispute or a refund) can register what the
// service will read back.
func (f *Fake) fakePutObject(w http.ResponseWriter, r *http.Request) {
	kind, id := r.PathValue("kind"), r.PathValue("id")
	if _, ok := kinds[kind]; !ok {
		known := make([]string, 0, len(kinds))
		for k := range kinds {
			known = append(known, k)
		}
		slices.Sort(known)
		badParam("kind", fmt.Sprintf("unknown kind %q; one of %s", kind, strings.Join(known, ", "))).write(w)
		return
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFakeBody))
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		badParam("", "Invalid object JSON: want a JSON object").write(w)
		return
	}
	if dec.More() {
		badParam("", "Invalid object JSON: more than one value").write(w)
		return
	}
	if _, err := childList(obj[kinds[kind].childKey]); kinds[kind].childKey != "" && err != nil {
		badParam(kinds[kind].childKey, err.Error()).write(w)
		return
	}
	f.PutObject(kind, id, obj)
	stored, _, _ := f.lookup(kind, id)
	writeJSON(w, http.StatusCreated, stored)
}
