package stripefake

import (
	"net/http"
)

// cancelSubscription serves DELETE /v1/subscriptions/{id}: the subscription
// becomes canceled at once, and the answer is the whole subscription, its
// items included, as Stripe's is (and as GET serves it). Stripe answers a
// subscription that is already canceled as one it does not know (404
// resource_missing), and so does the fake.
func (f *Fake) cancelSubscription(w http.ResponseWriter, r *http.Request) {
	if _, e := parseQuery(r, false); e != nil {
		e.write(w)
		return
	}
	id := r.PathValue("id")
	f.mu.Lock()
	obj, ok := f.objects[KindSubscription][id]
	if !ok || obj["status"] == "canceled" {
		f.mu.Unlock()
		notFound(KindSubscription, id).write(w)
		return
	}
	now := f.now().Unix()
	cancelled := copyMap(obj)
	cancelled["status"] = "canceled"
	cancelled["canceled_at"] = now
	cancelled["ended_at"] = now
	cancelled = normalize(cancelled)
	f.objects[KindSubscription][id] = cancelled
	items := f.children[KindSubscription][id]
	f.mu.Unlock()
	out := copyMap(cancelled)
	info := kinds[KindSubscription]
	out[info.childKey] = listEnvelope(items[:min(len(items), defaultLimit)], len(items) > defaultLimit, childURL(info, id), 0)
	writeJSON(w, http.StatusOK, out)
}
