package stripefake

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

var subscriptionKind = kindInfo{
	collection: "subscriptions", childKey: "items",
	childObject: "subscription_item", childIDPrefix: "si_", embedChildren: true,
	childListURL: func(id string) string { return "/v1/subscription_items?subscription=" + id },
}

// Subscription describes a subscription in the terms the fulfiller reads;
// PutSubscription renders it as the Stripe object of API version
// 2023-10-16 (period and trial fields at the top level).
type Subscription struct {
	ID       string
	Customer string
	// Status is "active" (the default), "trialing", "past_due", "unpaid",
	// "canceled", "incomplete", "incomplete_expired" or "paused".
	Status             string
	CurrentPeriodStart int64
	CurrentPeriodEnd   int64
	// TrialStart and TrialEnd are unix seconds; 0 renders null (no trial).
	TrialStart, TrialEnd int64
	CancelAtPeriodEnd    bool
	CanceledAt, EndedAt  int64
	// PauseCollection is pause_collection.behavior ("keep_as_draft",
	// "mark_uncollectible" or "void"); "" renders pause_collection null
	// (collection not paused). Pausing collection leaves Status as it is.
	PauseCollection string
	// PauseResumesAt is pause_collection.resumes_at (unix seconds); 0
	// renders null (paused until further notice).
	PauseResumesAt int64
	Items          []SubscriptionItem
}

// SubscriptionItem is one price of a subscription and its quantity.
type SubscriptionItem struct {
	// ID defaults to "si_<subscription>_<n>".
	ID       string
	PriceID  string
	Quantity int64
}

var validSubscriptionStatus = []string{"active", "trialing", "past_due", "unpaid", "canceled",
	"incomplete", "incomplete_expired", "paused"}

var validPauseBehavior = []string{"keep_as_draft", "mark_uncollectible", "void"}

// PutSubscription adds or replaces the subscription s, items included. It
// panics on a missing ID, an unknown status or an item without a price:
// those are mistakes in the test.
func (f *Fake) PutSubscription(s Subscription) {
	if s.ID == "" {
		panic("stripefake: PutSubscription: subscription id is required")
	}
	if err := oneOf("status", s.Status, validSubscriptionStatus); err != nil {
		panic("stripefake: PutSubscription: " + err.Error())
	}
	var pause any
	if s.PauseCollection != "" {
		if err := oneOf("pause_collection.behavior", s.PauseCollection, validPauseBehavior); err != nil {
			panic("stripefake: PutSubscription: " + err.Error())
		}
		pause = map[string]any{"behavior": s.PauseCollection, "resumes_at": nullableTime(s.PauseResumesAt)}
	} else if s.PauseResumesAt != 0 {
		panic("stripefake: PutSubscription: pause_resumes_at without pause_collection")
	}
	created := f.now().Unix()
	items := make([]map[string]any, len(s.Items))
	for i, it := range s.Items {
		if it.PriceID == "" {
			panic(fmt.Sprintf("stripefake: PutSubscription: items[%d]: price_id is required", i))
		}
		id := it.ID
		if id == "" {
			id = fmt.Sprintf("si_%s_%d", strings.TrimPrefix(s.ID, "sub_"), i+1)
		}
		price := lineItemObject(s.ID, i, Item{PriceID: it.PriceID, Recurring: true}, defaultCurrency, created)["price"]
		items[i] = map[string]any{
			"id": id, "object": "subscription_item", "subscription": s.ID, "created": created,
			"price": price, "quantity": it.Quantity, "metadata": map[string]any{},
		}
	}
	f.put(KindSubscription, s.ID, map[string]any{
		"id":                   s.ID,
		"object":               "subscription",
		"customer":             nullable(s.Customer),
		"status":               withDefault(s.Status, "active"),
		"current_period_start": s.CurrentPeriodStart,
		"current_period_end":   s.CurrentPeriodEnd,
		"trial_start":          nullableTime(s.TrialStart),
		"trial_end":            nullableTime(s.TrialEnd),
		"cancel_at_period_end": s.CancelAtPeriodEnd,
		"canceled_at":          nullableTime(s.CanceledAt),
		"ended_at":             nullableTime(s.EndedAt),
		"pause_collection":     pause,
		"created":              created,
		"currency":             defaultCurrency,
		"livemode":             false,
		"metadata":             map[string]any{},
	}, items)
}

func nullableTime(t int64) any {
	if t == 0 {
		return nil
	}
	return t
}

// listSubscriptionItems serves GET /v1/subscription_items?subscription=sub_...
func (f *Fake) listSubscriptionItems(w http.ResponseWriter, r *http.Request) {
	q, e := parseQueryWith(r, true, func(k string) bool { return k == "subscription" })
	if e != nil {
		e.write(w)
		return
	}
	id := q.Get("subscription")
	if id == "" {
		badParam("subscription", "Missing required param: subscription.").write(w)
		return
	}
	f.servePageOfChildren(w, q, KindSubscription, id, "/v1/subscription_items", false)
}

// subscriptionPeriod is the period of the subscriptions PutSession starts.
const subscriptionPeriod = 30 * 24 * time.Hour

// startSubscription stores the subscription a subscription-mode session
// created, unless it is stored already: active, its first month starting
// now, holding the session's recurring items.
func (f *Fake) startSubscription(s Session) {
	if s.Mode != "subscription" || s.Subscription == "" {
		return
	}
	if _, _, ok := f.lookup(KindSubscription, s.Subscription); ok {
		return
	}
	now := f.now()
	sub := Subscription{ID: s.Subscription, Customer: s.Customer, CurrentPeriodStart: now.Unix(),
		CurrentPeriodEnd: now.Add(subscriptionPeriod).Unix()}
	for _, it := range s.Items {
		if it.Recurring {
			sub.Items = append(sub.Items, SubscriptionItem{PriceID: it.PriceID, Quantity: max(it.Quantity, 1)})
		}
	}
	f.PutSubscription(sub)
}
