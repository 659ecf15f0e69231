package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/logging"
	"fulfiller/internal/logging/logtest"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/order"
	"fulfiller/internal/stripeapi/stripefake"
)

const (
	project     = "3f98888f9999c9999e99a2"
	project2    = "4a17777e8888b8888d88b3"
	priceMonth  = "price_month30"
	priceOther  = "price_other30" // a month of project2
	priceYear   = "price_year365" // a year of project, the yearly plan of priceMonth
	priceLife   = "price_lifetime"
	luarmorKey  = fulfillertest.LuarmorAPIKey
	shopToken   = fulfillertest.ShopAPIToken // the storefront's bearer token (SHOP_API_TOKEN)
	secretOld   = "whsec_old_secret_for_tests"
	secretNew   = "whsec_new_secret_for_tests"
	defaultMail = "buyer@example.com"
)

// bundle is the service of one test (fulfillertest.Service: its
// listeners, database and stand-ins) with this package's catalog.
type bundle struct {
	*fulfillertest.Service
}

type options struct {
	luarmorLatency time.Duration
	policy         *order.Policy
	databaseURL    string        // a migrated database; "" makes a fresh one
	reconcileEvery time.Duration // 0: no periodic reconciliation
	configure      func(*config.Config)
	logger         *slog.Logger
	stock          map[string]catalog.Product // stocked prices added to the catalog
}

// withConfig changes the service's settings before it starts, after the
// changes of the options before it.
func withConfig(f func(*config.Config)) func(*options) {
	return func(o *options) {
		earlier := o.configure
		o.configure = func(c *config.Config) {
			if earlier != nil {
				earlier(c)
			}
			f(c)
		}
	}
}

// withLogger sends the service's log to l.
func withLogger(l *slog.Logger) func(*options) {
	return func(o *options) { o.logger = l }
}

func setup(t *testing.T, opts ...func(*options)) *bundle {
	t.Helper()
	var o options
	for _, f := range opts {
		f(&o)
	}
	cat := &catalog.Catalog{Prices: map[string]catalog.Product{
		priceMonth: {ProjectID: project, KeyDays: 30},
		priceLife:  {ProjectID: project, KeyDays: 0},
		priceOther: {ProjectID: project2, KeyDays: 30},
		priceYear:  {ProjectID: project, KeyDays: 365},
	}}
	for id, p := range o.stock {
		cat.Put(id, p)
	}
	svc := fulfillertest.StartService(t, fulfillertest.Options{
		Catalog:        cat,
		Luarmor:        sandbox.Options{Projects: []string{project, project2}, StrictBody: true},
		DatabaseURL:    o.databaseURL,
		WebhookSecrets: []string{secretOld, secretNew},
		Logger:         o.logger,
		Configure: func(c *config.Config) {
			c.AdminAPIToken = adminToken
			c.ReconcileInterval = o.reconcileEvery
			if o.policy != nil {
				c.Policy = *o.policy
			}
			if o.configure != nil {
				o.configure(c)
			}
		},
	})
	if o.luarmorLatency > 0 {
		svc.Luarmor.SetLatency(o.luarmorLatency)
	}
	return &bundle{Service: svc}
}

// paidSession registers a paid Checkout Session in the Stripe fake.
func (b *bundle) paidSession(t *testing.T, items ...stripefake.Item) stripefake.Session {
	t.Helper()
	return b.Stripe.PaidSession(defaultMail, items...)
}

// unpaidSession registers a completed Checkout Session whose delayed
// payment has not settled yet.
func (b *bundle) unpaidSession(t *testing.T, items ...stripefake.Item) stripefake.Session {
	t.Helper()
	s := b.paidSession(t, items...)
	s.PaymentStatus = "unpaid"
	b.Stripe.PutSession(s)
	return s
}

// buy pays for items and waits until the order is fulfilled.
func (b *bundle) buy(t *testing.T, items ...stripefake.Item) (stripefake.Session, httpapi.OrderJSON) {
	t.Helper()
	return b.Buy(t, defaultMail, items...)
}

// luarmorUsersFor lists the sandbox's keys whose note names the session.
func (b *bundle) luarmorUsersFor(sessionID string) int {
	n := 0
	for _, u := range b.Luarmor.Users(project) {
		if strings.Contains(u.Note, sessionID) {
			n++
		}
	}
	return n
}

// jobsDB is the service's database as rivertest's assertions read its jobs.
func (b *bundle) jobsDB() *riverpgxv5.Driver { return riverpgxv5.New(b.Pool) }

// waitJobEnded waits on watch for the given attempt of job id to end
// (completed, cancelled or discarded) and returns its event.
func waitJobEnded(t *testing.T, watch *fulfillertest.JobWatch, id int64, attempt int) *river.Event {
	t.Helper()
	// The attempt is part of the match: River announces a job's end when
	// its completer has recorded it, which can be after the test already
	// saw the job completed in the database, so a watch made then may
	// still receive the end of the attempt before the one it waits for.
	return watch.WaitFor(t, fmt.Sprintf("attempt %d of job %d to end", attempt, id), func(ev *river.Event) bool {
		switch ev.Job.State {
		case rivertype.JobStateCompleted, rivertype.JobStateCancelled, rivertype.JobStateDiscarded:
			return ev.Job.ID == id && ev.Job.Attempt == attempt
		}
		return false
	})
}

// creates counts the key creations Luarmor received.
func (b *bundle) creates() int { return b.Luarmor.CallCount(http.MethodPost, "/users") }

func concurrently(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); f(i) }()
	}
	wg.Wait()
}

// An operator's request for an order by its Checkout Session ID that fails
// inside the database was logged with the error's text, which names the
// order by that ID (postgres.GetOrder: "reading order cs_..."): the route's
// own path scrubbing knows checkout_session_id only. The service's log
// filter turns the ID into the order's reference, whatever logger the
// service was given.
func TestAFailedRequestLogsTheOrderReferenceNotTheSessionID(t *testing.T) {
	t.Parallel()
	var logs logtest.Buffer
	b := setup(t, withLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	ctx := context.Background()
	_, err := b.Pool.Exec(ctx, `ALTER TABLE orders RENAME TO orders_hidden_by_test`)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = b.Pool.Exec(ctx, `ALTER TABLE orders_hidden_by_test RENAME TO orders`) })

	status, body := b.admin(t, http.MethodGet, "/v1/admin/orders/"+s.ID, "", adminToken)
	require.Equal(t, http.StatusInternalServerError, status, "%v", body)
	out := logs.String()
	require.Contains(t, out, `"msg":"request failed"`)
	require.Contains(t, out, "reading order "+logging.OrderRef(s.ID), "the error names the order by its reference")
	require.NotContains(t, out, s.ID)
}
