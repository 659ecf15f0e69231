package fulfillertest_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/stripeapi/stripefake"
)

// A wait for a state jobs bring about may start after the jobs were
// queued: it subscribes before it first looks. One that never comes true
// reports so once its time is up.
func TestJobsUntilSeesWhatJobsWrote(t *testing.T) {
	t.Parallel()
	svc := fulfillertest.StartService(t, fulfillertest.Options{Catalog: &catalog.Catalog{Prices: map[string]catalog.Product{
		"price_harness": {ProjectID: "proj_harness", KeyDays: 30},
	}}})
	sess := svc.Stripe.PaidSession("harness@example.com", stripefake.Item{PriceID: "price_harness", Quantity: 3})
	svc.Deliver(t, svc.SessionEvent(t, "checkout.session.completed", sess.ID))

	svc.WaitJobsUntil(t, "three keys in the sandbox", func() bool { return len(svc.Luarmor.Users("proj_harness")) == 3 })
	require.Equal(t, 3, svc.Luarmor.CallCount(http.MethodPost, "/users"))
	require.False(t, fulfillertest.JobsUntil(svc.Main.River, 100*time.Millisecond, func() bool { return false }))
}
