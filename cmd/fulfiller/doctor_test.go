package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/config"
	"fulfiller/internal/doctor"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/stripeapi/stripefake"
)

// doctorEnv is the environment of a configuration that can sell: the
// Luarmor sandbox with the catalog's project, the Stripe stand-in with its
// price and this service's webhook endpoint.
func doctorEnv(t *testing.T) map[string]string {
	t.Helper()
	const stripeKey, luarmorKey = "sk_test_doctorcommand0123", "doctor-command-key"
	lu := fulfillertest.StartLuarmor(t, sandbox.Options{APIKey: luarmorKey, Projects: []string{"proj_cli"}})
	databaseURL := postgrestest.NewURL(t)
	shop := serveShop(t, databaseURL)
	st := fulfillertest.StartStripe(t, stripeKey)
	st.PutPrice(stripefake.Price{ID: "price_cli", Active: true, Interval: "month"})
	st.PutWebhookEndpoint(stripefake.WebhookEndpoint{URL: shop + "/webhooks/stripe",
		APIVersion: stripe.APIVersion, EnabledEvents: jobs.HandledTypes()})
	catalogFile := filepath.Join(t.TempDir(), "catalog.yaml")
	require.NoError(t, os.WriteFile(catalogFile,
		[]byte("prices:\n  price_cli:\n    project_id: proj_cli\n    key_days: 30\n    billing: recurring\n"), 0o600))
	return map[string]string{
		"DATABASE_URL": databaseURL, "STRIPE_API_KEY": stripeKey, "STRIPE_API_BASE": st.URL,
		"STRIPE_WEBHOOK_SECRET": "whsec_doctorcommand_0123456789abcdef0123456789", "LUARMOR_API_KEY": luarmorKey, "LUARMOR_BASE_URL": lu.URL,
		"CATALOG_FILE": catalogFile, "PUBLIC_BASE_URL": shop + "/",
		"SHOP_NAME": "Doctor's shop", "SHOP_SUPPORT": "help@shop.example",
	}
}

// serveShop runs the service's HTTP server on the database, as doctor
// finds it at PUBLIC_BASE_URL, and returns its URL.
func serveShop(t *testing.T, databaseURL string) string {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), databaseURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	api := &httpapi.Server{Pool: pool, Webhook: http.NotFoundHandler(), Logger: slog.New(slog.DiscardHandler)}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestDoctorPrintsOneLinePerCheckAndPassesAGoodConfiguration(t *testing.T) {
	t.Parallel()
	env := doctorEnv(t)
	var out strings.Builder
	require.NoError(t, run(context.Background(), []string{"doctor"}, envOf(env), &out, io.Discard))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 14, out.String())
	for _, l := range lines {
		if strings.Contains(l, "stripe key") {
			require.True(t, strings.HasPrefix(l, "WARN"), l)
			continue
		}
		require.True(t, strings.HasPrefix(l, "PASS"), l)
	}
	require.Contains(t, out.String(), env["PUBLIC_BASE_URL"]+"webhooks/stripe is enabled")
	require.Contains(t, out.String(), "PASS  trusted proxies")
	require.NotContains(t, out.String(), env["STRIPE_API_KEY"])
	require.NotContains(t, out.String(), env["LUARMOR_API_KEY"])
}

// TestDoctorTakesItsLuarmorReadsFromTheFleetsBudget: doctor's Luarmor
// reads take slots of the fleet's budget, recorded under doctor's name
// beside the service's, so doctor run beside a busy fleet never pushes
// it past Luarmor's limit; each slot is ended when its read is.
func TestDoctorTakesItsLuarmorReadsFromTheFleetsBudget(t *testing.T) {
	t.Parallel()
	env := doctorEnv(t)
	require.NoError(t, run(context.Background(), []string{"doctor"}, envOf(env), io.Discard, io.Discard))
	pool, err := pgxpool.New(context.Background(), env["DATABASE_URL"])
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	var taken, open int
	require.NoError(t, pool.QueryRow(context.Background(),
		`SELECT count(*), count(*) FILTER (WHERE finished_at IS NULL) FROM luarmor_calls WHERE replica LIKE 'doctor-%' AND class = 'maintenance'`).
		Scan(&taken, &open))
	require.Equal(t, 3, taken, "the status, the API key's details and its stats, each with a slot of the budget")
	require.Zero(t, open, "every slot ended with its read")
}

func TestDoctorExitsNonZeroOnAFailure(t *testing.T) {
	t.Parallel()
	env := doctorEnv(t)
	env["STRIPE_WEBHOOK_SECRET"] = "whsec_rolled_0123456789abcdef0123456789abcdef," + doctor.DevelopmentWebhookSecret
	env["PUBLIC_BASE_URL"] = ""
	var out strings.Builder
	err := run(context.Background(), []string{"doctor"}, envOf(env), &out, io.Discard)
	require.ErrorIs(t, err, errDoctorFailed)
	require.Contains(t, out.String(), "FAIL  webhook secret")
	require.Contains(t, out.String(), "WARN  stripe webhook")
	require.Contains(t, out.String(), "PUBLIC_BASE_URL is not set")

	// A missing setting is a FAIL line naming it, as serve names it.
	delete(env, "LUARMOR_API_KEY")
	out.Reset()
	err = run(context.Background(), []string{"doctor"}, envOf(env), &out, io.Discard)
	require.ErrorIs(t, err, errDoctorFailed)
	require.Contains(t, out.String(), "FAIL  setting LUARMOR_API_KEY is required")
	require.ErrorIs(t, run(context.Background(), []string{"doctor", "extra"}, envOf(env), io.Discard, io.Discard), errUsage)
}

func TestDoctorAndServeNameEveryBadSettingInOneRun(t *testing.T) {
	t.Parallel()
	env := doctorEnv(t)
	// Three required settings missing, one out of bounds.
	delete(env, "STRIPE_API_KEY")
	delete(env, "LUARMOR_API_KEY")
	delete(env, "STRIPE_WEBHOOK_SECRET")
	env["MAX_UNITS_PER_ORDER"] = "0"

	var out strings.Builder
	err := run(context.Background(), []string{"doctor"}, envOf(env), &out, io.Discard)
	require.ErrorIs(t, err, errDoctorFailed)
	got := out.String()
	for _, line := range []string{
		"FAIL  setting STRIPE_WEBHOOK_SECRET is required (the webhook endpoint's signing secret",
		"FAIL  setting STRIPE_API_KEY is required (a secret or restricted key",
		"FAIL  setting LUARMOR_API_KEY is required (Luarmor dashboard, API section)",
		"FAIL  setting MAX_UNITS_PER_ORDER \"0\" must be a whole number from 1 to 10000",
	} {
		require.Contains(t, got, line, got)
	}
	// What needs them says so; what does not still ran.
	require.Contains(t, got, "FAIL  stripe key         not checked: STRIPE_API_KEY needs fixing first")
	require.Contains(t, got, "FAIL  luarmor key        not checked: LUARMOR_API_KEY needs fixing first")
	require.Contains(t, got, "FAIL  webhook secret     not checked: STRIPE_WEBHOOK_SECRET needs fixing first")
	require.Contains(t, got, "PASS  database           reachable; migrations current")
	require.Contains(t, got, "PASS  luarmor api        reachable")
	require.Contains(t, got, "PASS  trusted proxies")

	// serve stops at start-up with the same four, one line each.
	err = run(context.Background(), []string{"serve"}, envOf(env), io.Discard, io.Discard)
	var all config.Errors
	require.ErrorAs(t, err, &all)
	require.Len(t, all, 4, err.Error())
	lines := strings.Split(err.Error(), "\n")
	require.Equal(t, "config: 4 settings need fixing:", lines[0])
	for i, name := range []string{"STRIPE_WEBHOOK_SECRET", "STRIPE_API_KEY", "LUARMOR_API_KEY", "MAX_UNITS_PER_ORDER"} {
		require.True(t, strings.HasPrefix(lines[i+1], "  "+name+" "), lines[i+1])
	}
}

// The settings of the events sent to the shop's own tools are checked:
// one start-up refuses is named, and its check says it was not run; one
// start-up takes is described.
func TestDoctorChecksTheNotificationSettings(t *testing.T) {
	t.Parallel()
	env := doctorEnv(t)
	env["OUTBOUND_WEBHOOK_URL"] = "http://shop.example/hook"
	env["OUTBOUND_WEBHOOK_SECRET"] = "0123456789abcdef0123456789abcdef"
	env["DISCORD_WEBHOOK_URL"] = "https://discord.com/api/webhooks/1/discord-token-part"
	var out strings.Builder
	require.ErrorIs(t, run(context.Background(), []string{"doctor"}, envOf(env), &out, io.Discard), errDoctorFailed)
	require.Contains(t, out.String(), "FAIL  setting OUTBOUND_WEBHOOK_URL")
	require.Contains(t, out.String(), "must be https (http only for localhost)")
	require.Contains(t, out.String(), "FAIL  shop webhooks      not checked: OUTBOUND_WEBHOOK_URL needs fixing first")
	require.Contains(t, out.String(), "PASS  discord channel    order.fulfilled, order.failed, key.revoked, stock.low posted to a Discord channel")
	require.NotContains(t, out.String(), "discord-token-part")
}
