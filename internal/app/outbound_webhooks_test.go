package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/logging"
	"fulfiller/internal/mail"
	"fulfiller/internal/mail/mailtest"
	"fulfiller/internal/outbound"
	"fulfiller/internal/stripeapi/stripefake"
)

const outboundSecret = "shop-backend-signing-secret-0123456789abcdef"

// received is one request the shop's backend got.
type received struct {
	header   http.Header
	body     []byte
	event    outbound.Event
	verified error // the signature checked with the shop's secret
}

// receiver is the shop's backend (or its Discord channel) on 127.0.0.1:
// it keeps every request and answers what answer says for the n-th (from
// 1) request of an event; nil answers 200.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	answer func(n int, r *http.Request) int
}

func startReceiver(t *testing.T, answer func(n int, r *http.Request) int) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got := received{header: r.Header.Clone(), body: body}
		_ = json.Unmarshal(body, &got.event)
		got.verified = outbound.Verify(r.Header.Get(outbound.SignatureHeader), outboundSecret, body, time.Now(), 5*time.Minute)
		rc.mu.Lock()
		rc.got = append(rc.got, got)
		n := 0
		for _, g := range rc.got {
			if g.event.ID == got.event.ID {
				n++
			}
		}
		answer := rc.answer
		rc.mu.Unlock()
		status := http.StatusOK
		if answer != nil {
			status = answer(n, r)
		}
		if status == http.StatusTooManyRequests {
			// As Discord answers: how long to wait, in seconds.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"message":"You are being rate limited.","retry_after":0.3,"global":false}`))
			return
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// requests returns what was received so far.
func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// ofType returns the requests of events of type typ.
func (rc *receiver) ofType(typ outbound.EventType) []received {
	var out []received
	for _, g := range rc.requests() {
		if g.event.Type == typ {
			out = append(out, g)
		}
	}
	return out
}

func withWebhooks(rc *receiver, change ...func(*outbound.Settings)) func(*options) {
	return withConfig(func(c *config.Config) {
		c.Outbound = outbound.Settings{WebhookURLs: []string{rc.URL + "/hooks/fulfiller"}, Secret: outboundSecret}
		for _, f := range change {
			f(&c.Outbound)
		}
	})
}

// deliveryLog is the admin API's view of delivery id.
type deliveryLog struct {
	ID      int64  `json:"id"`
	EventID string `json:"event_id"`
	Type    string `json:"type"`
	Status  string `json:"status"`
	Log     []struct {
		Replay int    `json:"replay"`
		Status *int   `json:"status"`
		Error  string `json:"error"`
	} `json:"log"`
}

func (b *bundle) deliveries(t *testing.T) []deliveryLog {
	t.Helper()
	a := b.adminCall(t, http.MethodGet, "/v1/admin/webhooks/deliveries", "", adminToken)
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	var out struct {
		Deliveries []deliveryLog `json:"deliveries"`
	}
	require.NoError(t, json.Unmarshal(a.body, &out))
	return out.Deliveries
}

func (b *bundle) delivery(t *testing.T, id int64) deliveryLog {
	t.Helper()
	a := b.adminCall(t, http.MethodGet, fmt.Sprintf("/v1/admin/webhooks/deliveries/%d", id), "", adminToken)
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	var out deliveryLog
	require.NoError(t, json.Unmarshal(a.body, &out))
	return out
}

// waitDelivery waits until the only delivery of an event of type typ is
// in status.
func (b *bundle) waitDelivery(t *testing.T, typ outbound.EventType, status string) deliveryLog {
	t.Helper()
	var found deliveryLog
	b.WaitJobsUntil(t, string(typ)+" "+status, func() bool {
		for _, d := range b.deliveries(t) {
			if d.Type == string(typ) && d.Status == status {
				found = d
				return true
			}
		}
		return false
	})
	return b.delivery(t, found.ID)
}

// Every event is signed with the shop's secret, carries its ID as the
// Idempotency-Key, and is sent once however often Stripe repeats the
// webhook behind it or an operator repeats the action.
func TestOutboundWebhooksAreSignedAndSentOncePerEvent(t *testing.T) {
	t.Parallel()
	rc := startReceiver(t, nil)
	b := setup(t, withWebhooks(rc))

	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	key := o.Keys[0].UserKey
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.waitIdle(t)

	failed := b.paidSession(t, stripefake.Item{PriceID: "price_not_in_catalog", Quantity: 1})
	for range 2 {
		b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", failed.ID))
		b.WaitOrder(t, failed.ID, "failed")
	}
	for range 2 {
		require.Equal(t, "completed", string(b.keyAction(t, "reissue", keyBody(key))))
	}
	refund := b.refund(t, fulfillertest.NewID("ch_"), s.PaymentIntent, "", 1000)
	for range 2 {
		b.Deliver(t, refund)
		b.waitIdle(t)
	}
	sub := monthly(fulfillertest.NewID("sub_"), time.Now().Unix(), stripefake.SubscriptionItem{PriceID: priceMonth, Quantity: 1})
	subscribed, _ := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
	sub.Status = "canceled"
	b.Stripe.PutSubscription(sub)
	for range 2 {
		b.Deliver(t, fulfillertest.Event(t, "customer.subscription.deleted", mustJSON(t, map[string]any{"id": sub.ID, "object": "subscription", "status": "canceled"})))
		b.waitIdle(t)
	}

	ref := logging.OrderRef(s.ID)
	want := map[outbound.EventType]string{outbound.OrderFulfilled: "", outbound.OrderFailed: logging.OrderRef(failed.ID),
		outbound.KeyReissued: ref, outbound.KeyRevoked: ref, outbound.SubscriptionEnded: logging.OrderRef(subscribed.ID)}
	for typ, orderRef := range want {
		got := rc.ofType(typ)
		if typ == outbound.OrderFulfilled {
			require.Len(t, got, 2, "one sale each: the order and the subscription")
			continue
		}
		require.Len(t, got, 1, "%s is sent once", typ)
		require.Equal(t, orderRef, got[0].event.Data.OrderRef, "%s", typ)
	}
	for _, g := range rc.requests() {
		require.NoError(t, g.verified, "%s verifies with the shop's secret", g.event.Type)
		require.ErrorIs(t, outbound.Verify(g.header.Get(outbound.SignatureHeader), outboundSecret+"-other", g.body, time.Now(), 5*time.Minute),
			outbound.ErrBadSignature, "and with no other")
		require.True(t, strings.HasPrefix(g.event.ID, "evt_"))
		require.Equal(t, g.event.ID, g.header.Get(outbound.IdempotencyHeader))
		require.Equal(t, "application/json", g.header.Get("Content-Type"))
		require.NotContains(t, string(g.body), s.ID, "no Checkout Session ID")
		require.NotContains(t, string(g.body), key, "no full key")
	}
	sale := rc.ofType(outbound.OrderFulfilled)[0].event.Data
	require.Equal(t, ref, sale.OrderRef)
	require.Equal(t, defaultMail, sale.Email, "the shop's backend knows its buyers")
	require.Equal(t, []string{key[len(key)-4:]}, sale.Keys, "the key's last four characters")
	reissued := rc.ofType(outbound.KeyReissued)[0].event.Data
	require.Equal(t, key[len(key)-4:], reissued.OldKey)
	require.NotEmpty(t, reissued.NewKey)
	require.Contains(t, rc.ofType(outbound.OrderFailed)[0].event.Data.Product, "price_not_in_catalog", "what was bought, as sold")
	require.Equal(t, "unknown_price", rc.ofType(outbound.OrderFailed)[0].event.Data.FailureCode)
	require.Equal(t, "refund", rc.ofType(outbound.KeyRevoked)[0].event.Data.Source)
	require.Equal(t, sub.ID, rc.ofType(outbound.SubscriptionEnded)[0].event.Data.SubscriptionID)
	for _, d := range b.deliveries(t) {
		require.Equal(t, "delivered", d.Status, "%s", d.Type)
	}
}

// OUTBOUND_WEBHOOK_EVENTS chooses the events the backend receives.
func TestOutboundWebhookEventsChooseWhatIsSent(t *testing.T) {
	t.Parallel()
	rc := startReceiver(t, nil)
	b := setup(t, withWebhooks(rc, func(s *outbound.Settings) { s.Events = []outbound.EventType{outbound.OrderFailed} }))
	b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	failed := b.paidSession(t, stripefake.Item{PriceID: "price_not_in_catalog", Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", failed.ID))
	b.WaitOrder(t, failed.ID, "failed")
	b.waitIdle(t)
	got := rc.requests()
	require.Len(t, got, 1)
	require.Equal(t, outbound.OrderFailed, got[0].event.Type)
}

// A receiver that fails twice, then answers, gets the event a third time,
// with the same ID; the log shows each attempt.
func TestOutboundWebhookIsRetriedUntilTheReceiverAnswers(t *testing.T) {
	t.Parallel()
	rc := startReceiver(t, func(n int, _ *http.Request) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	b := setup(t, withWebhooks(rc))
	b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	d := b.waitDelivery(t, outbound.OrderFulfilled, "delivered")

	got := rc.ofType(outbound.OrderFulfilled)
	require.Len(t, got, 3)
	for _, g := range got {
		require.Equal(t, d.EventID, g.event.ID, "the same event on every attempt")
		require.Equal(t, d.EventID, g.header.Get(outbound.IdempotencyHeader))
		require.NoError(t, g.verified)
	}
	require.Len(t, d.Log, 3)
	for i, want := range []int{500, 500, 200} {
		require.NotNil(t, d.Log[i].Status)
		require.Equal(t, want, *d.Log[i].Status)
	}
	require.Contains(t, d.Log[0].Error, "answered 500")
	require.Empty(t, d.Log[2].Error)
}

// A receiver that refuses the event (a 4xx other than 408 and 429) is not
// asked again; the operator's replay sends it again, with the same ID, and
// is in the audit log.
func TestRefusedOutboundWebhookStopsUntilReplayed(t *testing.T) {
	t.Parallel()
	refuse := true
	var mu sync.Mutex
	rc := startReceiver(t, func(int, *http.Request) int {
		mu.Lock()
		defer mu.Unlock()
		if refuse {
			return http.StatusBadRequest
		}
		return http.StatusNoContent
	})
	b := setup(t, withWebhooks(rc))
	b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	d := b.waitDelivery(t, outbound.OrderFulfilled, "failed")
	b.waitIdle(t)
	require.Len(t, rc.requests(), 1, "a refusal is not retried")
	require.Len(t, d.Log, 1)
	require.Contains(t, d.Log[0].Error, "answered 400")

	// The answers are held to the OpenAPI document.
	c := newContractCheck(t, &lookupBundle{mailBundle: &mailBundle{bundle: b}})
	admin := "Bearer " + adminToken
	require.Equal(t, http.StatusOK, c.do(t, "GET", "/v1/admin/webhooks/deliveries?limit=10", "", "Authorization", admin).status)
	require.Equal(t, http.StatusOK, c.do(t, "GET", fmt.Sprintf("/v1/admin/webhooks/deliveries/%d", d.ID), "", "Authorization", admin).status)
	path := fmt.Sprintf("/v1/admin/webhooks/deliveries/%d/replay", d.ID)
	require.Equal(t, http.StatusUnauthorized, c.do(t, "POST", path, "", "Authorization", "Bearer wrong-token-0123456789abcdef0123").status)
	mu.Lock()
	refuse = false
	mu.Unlock()
	a := c.do(t, "POST", path, `{"reason":"the backend is fixed"}`, "Authorization", admin)
	require.Equal(t, http.StatusAccepted, a.status, "%s", a.body)
	d = b.waitDelivery(t, outbound.OrderFulfilled, "delivered")
	got := rc.requests()
	require.Len(t, got, 2)
	require.Equal(t, got[0].event.ID, got[1].event.ID, "the replay is the same event")
	require.Equal(t, got[0].body, got[1].body)
	require.NoError(t, got[1].verified)
	require.Len(t, d.Log, 2)
	require.Equal(t, 1, d.Log[1].Replay)

	status, audit := b.admin(t, http.MethodGet, "/v1/admin/audit", "", adminToken)
	require.Equal(t, http.StatusOK, status)
	entry := audit["entries"].([]any)[0].(map[string]any)
	require.Equal(t, "replay-delivery", entry["action"])
	require.Equal(t, "the backend is fixed", entry["reason"])
	require.Equal(t, logging.OrderRef(got[0].event.Data.OrderRef), logging.OrderRef(entry["order_ref"].(string)))

	require.Equal(t, http.StatusNotFound, b.adminCall(t, http.MethodPost, "/v1/admin/webhooks/deliveries/999999/replay", "", adminToken).status)
}

// A sender stopped mid-POST (its job cancelled past SHUTDOWN_TIMEOUT, as a
// killed replica's is handed on) loses no event: the next process posts it
// again, with the same event ID.
func TestOutboundWebhookCutOffMidPostIsSentAgain(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	rc := startReceiver(t, func(n int, r *http.Request) int {
		if n == 1 {
			arrived <- struct{}{}
			<-r.Context().Done() // the sender goes away mid-request
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	b := setup(t, withConfig(func(c *config.Config) {
		c.Outbound = outbound.Settings{WebhookURLs: []string{rc.URL + "/hooks/fulfiller"}, Secret: outboundSecret}
		c.ShutdownTimeout = time.Second
	}))
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	select {
	case <-arrived:
	case <-time.After(fulfillertest.WaitTimeout):
		t.Fatal("the event never reached the receiver")
	}
	require.NoError(t, b.Main.Close())
	b.restart(t)
	b.AdminURL = b.Main.AdminURL()
	d := b.waitDelivery(t, outbound.OrderFulfilled, "delivered")
	got := rc.ofType(outbound.OrderFulfilled)
	require.Len(t, got, 2, "sent again after the cut")
	require.Equal(t, got[0].event.ID, got[1].event.ID, "with the same event ID")
	require.Equal(t, d.EventID, got[1].header.Get(outbound.IdempotencyHeader))
	require.NoError(t, got[1].verified)
}

// The Discord channel gets a readable embed of each sale, failure and
// revocation, with neither key, session ID nor email; a 429's retry_after
// is waited out.
func TestDiscordMessagesCarryNoKeySessionOrEmail(t *testing.T) {
	t.Parallel()
	var limited sync.Once
	rc := startReceiver(t, func(n int, r *http.Request) int {
		status := http.StatusNoContent
		limited.Do(func() { status = http.StatusTooManyRequests })
		return status
	})
	b := setup(t, withConfig(func(c *config.Config) {
		c.Outbound = outbound.Settings{DiscordURL: rc.URL + "/api/webhooks/1/discord-token"}
	}))
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.refundOrder(t, s)
	failed := b.paidSession(t, stripefake.Item{PriceID: "price_not_in_catalog", Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", failed.ID))
	b.WaitOrder(t, failed.ID, "failed")
	b.WaitJobsUntil(t, "every Discord message delivered", func() bool {
		ds := b.deliveries(t)
		for _, d := range ds {
			if d.Status != "delivered" {
				return false
			}
		}
		return len(ds) == 3
	})

	titles := map[string]bool{}
	for _, g := range rc.requests() {
		body := string(g.body)
		require.NotContains(t, body, o.Keys[0].UserKey)
		require.NotContains(t, body, o.Keys[0].UserKey[len(o.Keys[0].UserKey)-4:], "not even the key's end")
		require.NotContains(t, body, s.ID)
		require.NotContains(t, body, failed.ID)
		require.NotContains(t, body, defaultMail)
		require.NotContains(t, body, "/orders/", "no order link")
		require.Empty(t, g.header.Get(outbound.SignatureHeader))
		var msg struct {
			Embeds []struct {
				Title  string `json:"title"`
				Color  int    `json:"color"`
				Fields []struct {
					Name  string `json:"name"`
					Value string `json:"value"`
				} `json:"fields"`
			} `json:"embeds"`
		}
		require.NoError(t, json.Unmarshal(g.body, &msg), body)
		require.Len(t, msg.Embeds, 1)
		titles[msg.Embeds[0].Title] = true
		require.Equal(t, "Order", msg.Embeds[0].Fields[0].Name)
		require.True(t, strings.HasPrefix(msg.Embeds[0].Fields[0].Value, "ord_"))
	}
	require.Equal(t, map[string]bool{"New sale": true, "Keys revoked": true, "Order failed": true}, titles)
	require.Len(t, rc.requests(), 4, "three messages, one of them twice after a 429")
}

// key.expiring rides with the buyer's expiry notice: once per key and
// expiry, however often the periodic job runs, with when the key stops
// and its last four characters.
func TestKeyExpiringIsSentOncePerKeyAndExpiry(t *testing.T) {
	t.Parallel()
	rc := startReceiver(t, nil)
	srv := mailtest.Start(t, smtpUser, smtpPassword)
	server, err := mail.ParseSMTPURL(srv.URL())
	require.NoError(t, err)
	b := setup(t, withConfig(func(c *config.Config) {
		c.Mail = mail.Settings{SMTP: server, From: "Acme <keys@shop.example>", PublicBaseURL: publicBase, ExpiryNoticeDays: 90}
		c.Outbound = outbound.Settings{WebhookURLs: []string{rc.URL}, Secret: outboundSecret, Events: []outbound.EventType{outbound.KeyExpiring}}
	}))
	sub := monthly(fulfillertest.NewID("sub_"), time.Now().Unix(), stripefake.SubscriptionItem{PriceID: priceMonth, Quantity: 1})
	s, o := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
	key := o.Keys[0].UserKey
	b.queueExpiryNotices(t)
	require.Empty(t, rc.requests(), "a key that renews is not expiring")

	sub.CancelAtPeriodEnd = true
	b.changeSubscription(t, sub)
	b.queueExpiryNotices(t)
	b.queueExpiryNotices(t) // the job run twice
	got := rc.ofType(outbound.KeyExpiring)
	require.Len(t, got, 1)
	require.NoError(t, got[0].verified)
	data := got[0].event.Data
	require.Equal(t, logging.OrderRef(s.ID), data.OrderRef)
	require.Equal(t, []string{key[len(key)-4:]}, data.Keys)
	require.NotNil(t, data.ExpiresAt)
	require.Equal(t, b.user(t, key).AuthExpire, *data.ExpiresAt)
	require.NotContains(t, string(got[0].body), key)
}

// A sale that leaves a stocked price below a quarter of its target posts
// "Stock running low" to Discord, once a day per price.
func TestDiscordHearsOfStockRunningLow(t *testing.T) {
	t.Parallel()
	rc := startReceiver(t, nil)
	b := setupStock(t, 4, withConfig(func(c *config.Config) {
		c.Outbound = outbound.Settings{DiscordURL: rc.URL + "/api/webhooks/1/discord-token"}
	}))
	// The refills wait, so the sales alone set the level.
	require.NoError(t, b.Main.River.QueuePause(context.Background(), jobs.QueueLuarmorStock, nil))
	b.buy(t, stripefake.Item{PriceID: priceStocked, Quantity: 4})
	// Discord's messages are embeds, told apart by their titles.
	stockMessages := func() []string {
		var out []string
		for _, r := range rc.requests() {
			if strings.Contains(string(r.body), "Stock running low") {
				out = append(out, string(r.body))
			}
		}
		return out
	}
	b.WaitJobsUntil(t, "the stock message", func() bool { return len(stockMessages()) == 1 })
	require.NoError(t, b.Main.River.QueueResume(context.Background(), jobs.QueueLuarmorStock, nil))
	b.waitStock(t, 4)
	b.buy(t, stripefake.Item{PriceID: priceStocked, Quantity: 4})
	b.waitIdle(t)

	low := stockMessages()
	require.Len(t, low, 1, "once a day per price")
	body := low[0]
	require.Contains(t, body, priceStocked)
	require.Contains(t, body, `"0 of 4"`)
}
