package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/logging"
	"fulfiller/internal/outbound"
	"fulfiller/internal/stripeapi/stripefake"
	"fulfiller/internal/testdb"
)

const (
	outboundSecret = "shop-backend-signing-secret-0123456789abcdef"
	adminToken     = "admin-token-for-the-crash-test-0123456789abcdef0123456789abcdef"
)

// A process killed with SIGKILL while it posts an event to the shop's
// backend loses nothing: the process started after it posts the same
// event again (same ID, a valid signature), every other event of the
// purchases arrives, and the delivery log shows the attempt cut off and
// the one that got through.
func TestOutboundWebhooksSurviveSIGKILL(t *testing.T) {
	testdb.Long(t, "builds the binary and kills it mid-delivery")
	rc := startHoldingReceiver(t)
	c := newCluster(t, 1)
	c.env = append(c.env, "OUTBOUND_WEBHOOK_URL="+rc.URL+"/hooks/fulfiller", "OUTBOUND_WEBHOOK_SECRET="+outboundSecret,
		"ADMIN_API_TOKEN="+adminToken)

	sold := []*purchase{c.oneOffSale(priceMonth, 1), c.oneOffSale(priceLife, 2)}
	failed := c.oneOffSale("price_not_in_catalog", 1)
	victim := c.start(0)
	sending := c.feed(append(slices.Clone(sold), failed))

	var held received
	select {
	case held = <-rc.held:
	case <-time.After(recoveryBound):
		t.Fatalf("no event reached the shop's backend within %s", recoveryBound)
	}
	killedAt := c.kill(victim)
	rc.release()
	after := c.start(0)
	sending.Wait()

	if !c.waitDelivered(sold, killedAt.Add(recoveryBound)) {
		t.Fatalf("orders not delivered within %s of the kill\n%s", recoveryBound, c.stateReport(sold))
	}
	var deliveries []delivery
	deadline := killedAt.Add(recoveryBound)
	for {
		deliveries = c.deliveries(after)
		done := len(deliveries) == len(sold)+1
		for _, d := range deliveries {
			done = done && d.Status == "delivered"
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events not all delivered within %s of the kill: %+v\n%s", recoveryBound, deliveries, c.jobReport())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("every event delivered %s after the kill", time.Since(killedAt).Round(time.Millisecond))

	// The event cut off arrives again, the same event.
	require.NoError(t, held.verified, "the cut-off request was signed too")
	var again []received
	for _, g := range rc.requests() {
		if g.event.ID == held.event.ID {
			again = append(again, g)
		}
	}
	require.Len(t, again, 2, "the event cut off is posted once more, by the process started after the kill")
	require.Equal(t, held.body, again[1].body, "the same event, byte for byte")
	require.Equal(t, held.event.ID, again[1].header.Get(outbound.EventIDHeader))
	require.Equal(t, held.event.ID, again[1].header.Get(outbound.IdempotencyHeader))
	require.NoError(t, again[1].verified, "signed with the shop's secret")

	// None lost: each order's event arrives, and nothing the service did
	// not record.
	want := map[string]outbound.EventType{logging.OrderRef(failed.session.ID): outbound.OrderFailed}
	for _, p := range sold {
		want[logging.OrderRef(p.session.ID)] = outbound.OrderFulfilled
	}
	got := map[string]outbound.EventType{}
	recorded := map[string]bool{}
	for _, d := range deliveries {
		recorded[d.EventID] = true
	}
	for _, g := range rc.requests() {
		require.NoError(t, g.verified, "%s %s", g.event.Type, g.event.ID)
		require.Equal(t, g.event.ID, g.header.Get(outbound.IdempotencyHeader))
		require.True(t, recorded[g.event.ID], "%s %s is an event the service recorded", g.event.Type, g.event.ID)
		got[g.event.Data.OrderRef] = g.event.Type
	}
	require.Equal(t, want, got, "every order's event arrived")

	// The delivery log: the attempt cut off, then the one that got through.
	var cut delivery
	for _, d := range deliveries {
		if d.EventID == held.event.ID {
			cut = c.delivery(after, d.ID)
		}
	}
	require.Equal(t, "delivered", cut.Status)
	require.Equal(t, 2, cut.Attempts, "%+v", cut)
	require.Len(t, cut.Log, 2, "%+v", cut)
	require.Nil(t, cut.Log[0].Status, "the attempt cut off got no answer")
	require.Contains(t, cut.Log[0].Error, "stopped mid-attempt")
	require.NotNil(t, cut.Log[1].Status)
	require.Equal(t, http.StatusOK, *cut.Log[1].Status)
	require.Empty(t, cut.Log[1].Error)
	for _, d := range deliveries {
		if d.EventID != held.event.ID {
			require.Equal(t, 1, d.Attempts, "%s was posted once", d.Type)
		}
	}
	c.waitIdle(time.Now().Add(recoveryBound))
	c.checkJobs()
}

// oneOffSale registers a paid one-off order of qty units of price with the
// Stripe fake; its checkout is delivered once.
func (c *cluster) oneOffSale(price string, qty int64) *purchase {
	s := newPaidSession()
	s.Items = []stripefake.Item{{PriceID: price, Quantity: qty}}
	c.stripe.PutSession(s)
	return &purchase{label: fmt.Sprintf("order of %d %s", qty, price), session: s, units: int(qty),
		events: [][]byte{c.sessionEvent("checkout.session.completed", s.ID)}}
}

// received is one request the shop's backend got.
type received struct {
	header   http.Header
	body     []byte
	event    outbound.Event
	verified error // the signature checked with the shop's secret
}

// holdingReceiver is the shop's backend on 127.0.0.1. It holds the first
// request it gets open, sent on held, until release: the sender is killed
// meanwhile. Every other request is answered 200.
type holdingReceiver struct {
	*httptest.Server
	held     chan received
	released chan struct{}
	once     sync.Once

	mu  sync.Mutex
	got []received
}

func startHoldingReceiver(t *testing.T) *holdingReceiver {
	rc := &holdingReceiver{held: make(chan received, 1), released: make(chan struct{})}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		g := received{header: r.Header.Clone(), body: body}
		_ = json.Unmarshal(body, &g.event)
		g.verified = outbound.Verify(r.Header.Get(outbound.SignatureHeader), outboundSecret, body, time.Now(), 5*time.Minute)
		rc.mu.Lock()
		rc.got = append(rc.got, g)
		first := len(rc.got) == 1
		rc.mu.Unlock()
		if first {
			rc.held <- g
			<-rc.released
			w.WriteHeader(http.StatusServiceUnavailable) // its sender is gone: nobody reads this
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(rc.Close)
	t.Cleanup(rc.release) // before Close, which waits for the held request
	return rc
}

func (rc *holdingReceiver) release() { rc.once.Do(func() { close(rc.released) }) }

func (rc *holdingReceiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// delivery is the admin API's view of one delivery.
type delivery struct {
	ID       int64  `json:"id"`
	EventID  string `json:"event_id"`
	Type     string `json:"type"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	Log      []struct {
		Status *int   `json:"status"`
		Error  string `json:"error"`
	} `json:"log"`
}

// deliveries lists the delivery log through p's admin API.
func (c *cluster) deliveries(p *replica) []delivery {
	var out struct {
		Deliveries []delivery `json:"deliveries"`
	}
	c.adminGet(p, "/v1/admin/webhooks/deliveries", &out)
	return out.Deliveries
}

// delivery is delivery id with its attempts, through p's admin API.
func (c *cluster) delivery(p *replica, id int64) delivery {
	var out delivery
	c.adminGet(p, fmt.Sprintf("/v1/admin/webhooks/deliveries/%d", id), &out)
	return out
}

func (c *cluster) adminGet(p *replica, path string, into any) {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.ctx, http.MethodGet, "http://"+p.admin+path, nil)
	require.NoError(c.t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := c.http.Do(req)
	require.NoError(c.t, err, "GET %s", path)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	require.Equal(c.t, http.StatusOK, resp.StatusCode, "GET %s: %s", path, body)
	require.NoError(c.t, json.Unmarshal(body, into), "GET %s", path)
}
