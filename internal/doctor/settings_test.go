package doctor_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/doctor"
)

func TestSettingsAtFaultAreListedAndOnlyTheChecksNeedingThemSkip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.doctor.Settings = config.Errors{
		{Name: "DATABASE_URL", Reason: "is required (postgres://user:password@host:5432/dbname)"},
		{Name: "LUARMOR_API_KEY", Reason: "is required (Luarmor dashboard, API section)"},
	}
	b.doctor.Pool = nil
	results := b.run(t)
	require.Equal(t, doctor.Result{Check: "setting DATABASE_URL", Status: doctor.Fail,
		Message: "is required (postgres://user:password@host:5432/dbname)"}, results[0])
	require.Equal(t, doctor.Result{Check: "setting LUARMOR_API_KEY", Status: doctor.Fail,
		Message: "is required (Luarmor dashboard, API section)"}, results[1])

	for check, setting := range map[string]string{
		"database": "DATABASE_URL", "luarmor key": "LUARMOR_API_KEY",
		"luarmor projects": "LUARMOR_API_KEY", "luarmor capacity": "LUARMOR_API_KEY",
	} {
		r := result(t, results, check)
		require.Equal(t, doctor.Fail, r.Status, check)
		require.Equal(t, "not checked: "+setting+" needs fixing first (its line above)", r.Message, check)
	}
	// The rest ran: Luarmor's status needs no key, Stripe's checks need
	// neither setting.
	for _, check := range []string{"luarmor api", "price " + priceOnce, "price " + priceMonth, "stripe webhook", "webhook secret", "trusted proxies"} {
		require.Equal(t, doctor.Pass, result(t, results, check).Status, check)
	}
	require.Equal(t, doctor.Warn, result(t, results, "stripe key").Status)
	require.True(t, doctor.Failed(results))
	for _, c := range b.sandbox.Calls() {
		require.Equal(t, "/status", c.Path, "nothing but the free status call reached Luarmor without a key")
	}
}

func TestACatalogThatCannotBeLoadedIsALineAndTheRestRuns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.doctor.Catalog = nil
	b.doctor.CatalogErr = errors.New("catalog shop.yaml: price_x: key_days is required (0 for a lifetime key)")
	results := b.run(t)
	require.Equal(t, doctor.Result{Check: "catalog", Status: doctor.Fail,
		Message: "catalog shop.yaml: price_x: key_days is required (0 for a lifetime key)"}, results[0])
	for _, check := range []string{"prices", "luarmor projects"} {
		r := result(t, results, check)
		require.Equal(t, doctor.Fail, r.Status, check)
		require.Equal(t, "not checked: the catalog could not be loaded (its line above)", r.Message)
	}
	for _, check := range []string{"database", "luarmor api", "luarmor key", "luarmor capacity", "stripe webhook", "webhook secret", "trusted proxies"} {
		require.Equal(t, doctor.Pass, result(t, results, check).Status, check)
	}
}

func TestAStripeSettingAtFaultIsNamedOnEveryStripeCheck(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.doctor.Settings = config.Errors{{Name: "STRIPE_API_KEY", Reason: "must start with sk_ or rk_"}}
	results := b.run(t)
	for _, check := range []string{"stripe key", "price " + priceOnce, "price " + priceMonth, "stripe webhook"} {
		r := result(t, results, check)
		require.Equal(t, doctor.Fail, r.Status, check)
		require.Equal(t, "not checked: STRIPE_API_KEY needs fixing first (its line above)", r.Message, check)
	}
	require.Empty(t, b.stripe.Requests(), "nothing reached Stripe with a key at fault")
	for _, check := range []string{"database", "luarmor api", "luarmor key", "luarmor projects", "luarmor capacity", "webhook secret", "trusted proxies"} {
		require.Equal(t, doctor.Pass, result(t, results, check).Status, check)
	}
}
