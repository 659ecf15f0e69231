package doctor_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/doctor"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/luarmor/sandbox"
)

func TestStandInsAreFoundOnlyWithTheDevelopmentKeysAndTheirOwnHeader(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ssrv := fulfillertest.StartStripe(t, config.DevStripeAPIKey)
	fake := ssrv.Fake
	lsrv := fulfillertest.StartLuarmor(t, sandbox.Options{APIKey: config.DevLuarmorAPIKey})
	dev := config.Config{StripeAPIKey: config.DevStripeAPIKey, StripeAPIBase: ssrv.URL,
		LuarmorAPIKey: config.DevLuarmorAPIKey, LuarmorBaseURL: lsrv.URL}
	require.Equal(t, doctor.StandIns{Stripe: ssrv.URL, Luarmor: lsrv.URL}, doctor.FindStandIns(ctx, nil, dev))

	// Real keys are never taken for development ones, even pointed at
	// the stand-ins, and are not sent anywhere to find out.
	asked := len(fake.Requests())
	prod := dev
	prod.StripeAPIKey, prod.LuarmorAPIKey = "sk_live_realkey0123456789", "real-luarmor-key"
	require.Equal(t, doctor.StandIns{}, doctor.FindStandIns(ctx, nil, prod))
	require.Len(t, fake.Requests(), asked)

	// The development keys where no stand-in answers: a server without
	// the header (as the real APIs), the other stand-in's header, or
	// Stripe's own API (STRIPE_API_BASE unset, not asked).
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	for name, cfg := range map[string]config.Config{
		"no header": {StripeAPIKey: config.DevStripeAPIKey, StripeAPIBase: plain.URL,
			LuarmorAPIKey: config.DevLuarmorAPIKey, LuarmorBaseURL: plain.URL},
		"swapped": {StripeAPIKey: config.DevStripeAPIKey, StripeAPIBase: lsrv.URL,
			LuarmorAPIKey: config.DevLuarmorAPIKey, LuarmorBaseURL: ssrv.URL},
		"stripe's api": {StripeAPIKey: config.DevStripeAPIKey, LuarmorAPIKey: config.DevLuarmorAPIKey, LuarmorBaseURL: plain.URL},
	} {
		require.Equal(t, doctor.StandIns{}, doctor.FindStandIns(ctx, nil, cfg), name)
	}
}

func TestAgainstTheStandInsEachLineReadFromThemSaysSo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.doctor.StandIns = doctor.StandIns{Stripe: "http://127.0.0.1:8092", Luarmor: "http://127.0.0.1:8091"}
	b.doctor.WebhookSecrets = []string{doctor.DevelopmentWebhookSecret}
	results := b.run(t)
	require.False(t, doctor.Failed(results), "%v", results)

	first := results[0]
	require.Equal(t, "stand-ins", first.Check)
	require.Equal(t, doctor.Warn, first.Status)
	require.Equal(t, "checked against the local stand-ins of `fulfiller dev` (make run), not the real services: "+
		"Stripe is its Stripe stand-in at http://127.0.0.1:8092; Luarmor is its Luarmor sandbox at http://127.0.0.1:8091. "+
		"The lines marked [Stripe stand-in] or [Luarmor sandbox] say nothing about real sales: before selling, run doctor with the production settings",
		first.Message)
	for _, r := range results[1:] {
		switch {
		case strings.HasPrefix(r.Check, "luarmor "):
			require.True(t, strings.HasPrefix(r.Message, "[Luarmor sandbox] "), r.String())
		case r.Check == "stripe key" || r.Check == "stripe webhook" || strings.HasPrefix(r.Check, "price "):
			require.True(t, strings.HasPrefix(r.Message, "[Stripe stand-in] "), r.String())
		default:
			require.NotContains(t, r.Message, "[", r.String())
		}
	}
	require.Equal(t, doctor.Warn, result(t, results, "stripe key").Status)
	secret := result(t, results, "webhook secret")
	require.Equal(t, doctor.Warn, secret.Status, "the development secret is what the stand-ins are signed with")
	require.Contains(t, secret.Message, "serve refuses it")

	// A catalog price the stand-in was not given says how it gets there.
	b.catalog.Put("price_added", catalog.Product{ProjectID: projectA, KeyDays: 7})
	requireOnlyBut(t, b.run(t), "price price_added", doctor.Fail,
		"[Stripe stand-in] is not in the local Stripe stand-in", "`fulfiller dev` registers the catalog's prices when it starts, so restart it (make run)")

	// With a real Luarmor key the public secret could make real keys: it
	// fails as ever.
	b.doctor.StandIns.Luarmor = ""
	secret = result(t, b.run(t), "webhook secret")
	require.Equal(t, doctor.Fail, secret.Status)
	require.Contains(t, secret.Message, "anyone could forge a payment")
}

// requireOnlyBut requires check to have status with a message holding
// each of want, and every other check to pass, but for the warnings of
// the stand-ins.
func requireOnlyBut(t *testing.T, results []doctor.Result, check string, status doctor.Status, want ...string) {
	t.Helper()
	got := result(t, results, check)
	require.Equal(t, status, got.Status, got.Message)
	for _, w := range want {
		require.Contains(t, got.Message, w)
	}
	for _, r := range results {
		if r.Check == check || r.Status == doctor.Warn {
			continue
		}
		require.Equal(t, doctor.Pass, r.Status, r.String())
	}
}
