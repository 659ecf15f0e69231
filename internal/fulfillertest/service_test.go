package fulfillertest_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/stripeapi/stripefake"
)

// The harness waits on River's job events: a job that completes itself
// inside its own transaction (river.JobCompleteTx), as create_key does,
// still reaches the watch, and an order's wait ends on the service's
// notification of the change.
func TestAPurchaseIsSeenThroughJobEventsAndOrderNotifications(t *testing.T) {
	t.Parallel()
	svc := fulfillertest.StartService(t, fulfillertest.Options{Catalog: &catalog.Catalog{Prices: map[string]catalog.Product{
		"price_harness": {ProjectID: "proj_harness", KeyDays: 30},
	}}})
	watch := fulfillertest.WatchJobs(t, svc.Main.River)

	sess, o := svc.Buy(t, "harness@example.com", stripefake.Item{PriceID: "price_harness", Quantity: 2})
	require.Len(t, o.Keys, 2)

	created := watch.WaitCompleted(t, "create_key", 2)
	require.Len(t, created, 2)
	require.Equal(t, 2, svc.Luarmor.CallCount(http.MethodPost, "/users"), "one create per key")
	require.Equal(t, 1, svc.Count(t, `SELECT count(*) FROM orders WHERE checkout_session_id = $1`, sess.ID))
}

// Env is what the CLI's commands read: its settings pass the same checks
// as an operator's (a webhook secret of a real secret's length, for one).
func TestEnvIsASettingTheCommandsAccept(t *testing.T) {
	t.Parallel()
	svc := fulfillertest.StartService(t, fulfillertest.Options{})
	env := svc.Env()
	cfg, err := config.FromEnv(func(k string) string { return env[k] })
	require.NoError(t, err)
	require.Equal(t, svc.Main.Config.DatabaseURL, cfg.DatabaseURL)
	require.Equal(t, svc.Stripe.URL, cfg.StripeAPIBase)
	require.Equal(t, svc.Luarmor.URL, cfg.LuarmorBaseURL)
	require.Equal(t, []string{svc.Secret}, cfg.WebhookSecrets)
}
