package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// bannerDoctorEnv reads the doctor command the banner prints: one
// NAME=value per line, continued with \, up to the command itself. A
// value written "$NAME" is taken from dev's own environment, as the
// operator's terminal would have it.
func bannerDoctorEnv(t *testing.T, banner string, devEnv map[string]string) map[string]string {
	t.Helper()
	_, rest, ok := strings.Cut(banner, "Check this run as before a sale")
	require.True(t, ok, "the banner prints no doctor command:\n%s", banner)
	lines := strings.Split(rest, "\n")[1:]
	env := map[string]string{}
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "go run ./cmd/fulfiller doctor" {
			return env
		}
		assignment, continued := strings.CutSuffix(l, ` \`)
		require.True(t, continued, "line %q does not continue the command", l)
		name, value, ok := strings.Cut(assignment, "=")
		require.True(t, ok, "line %q is not NAME=value", l)
		switch {
		case value == `"$`+name+`"`:
			value = devEnv[name]
		case strings.HasPrefix(value, "'"):
			value = strings.ReplaceAll(strings.Trim(value, "'"), `'\''`, "'")
		}
		env[name] = value
	}
	t.Fatalf("the doctor command does not end with go run ./cmd/fulfiller doctor:\n%s", banner)
	return nil
}

func TestDoctorAgainstMakeRunChecksItsStandInsAndPasses(t *testing.T) {
	t.Parallel()
	d := startDev(t, nil)
	devEnv := d.env
	env := bannerDoctorEnv(t, d.banner, devEnv)
	require.Equal(t, "sk_test_fulfiller_local", env["STRIPE_API_KEY"])
	require.Equal(t, "http://"+devEnv["LISTEN_ADDR"], env["PUBLIC_BASE_URL"])

	var out strings.Builder
	err := run(context.Background(), []string{"doctor"}, envOf(env), &out, io.Discard)
	require.NoError(t, err, out.String())
	got := out.String()
	require.NotContains(t, got, "FAIL", got)
	require.True(t, strings.HasPrefix(got, "WARN  stand-ins          checked against the local stand-ins of `fulfiller dev` (make run), not the real services: "+
		"Stripe is its Stripe stand-in at http://"+devEnv["DEV_STRIPE_ADDR"]+"; Luarmor is its Luarmor sandbox at http://"+devEnv["DEV_LUARMOR_ADDR"]+"."), got)
	// The catalog's prices and project are checked for real, in the
	// stand-ins dev filled from the catalog.
	for _, line := range []string{
		"PASS  price price_dev_lifetime [Stripe stand-in] active, one-off, delivers project dev_project",
		"PASS  price price_dev_monthly [Stripe stand-in] active, one-off, delivers project dev_project",
		"PASS  luarmor projects   [Luarmor sandbox] all 1 catalog projects exist for this key",
		"PASS  stripe webhook     [Stripe stand-in] " + env["PUBLIC_BASE_URL"] + "/webhooks/stripe is enabled",
		"PASS  database           reachable; migrations current",
		"PASS  trusted proxies",
		"WARN  webhook secret     STRIPE_WEBHOOK_SECRET is the public development secret: fine against the local stand-ins",
	} {
		require.Contains(t, got, line, got)
	}
}

func TestDoctorAgainstMakeRunNamesACatalogPriceTheStandInLacks(t *testing.T) {
	t.Parallel()
	d := startDev(t, nil)
	env := bannerDoctorEnv(t, d.banner, d.env)

	// The catalog gained a price after make run started.
	example, err := os.ReadFile(filepath.Join("..", "..", "catalog.example.yaml"))
	require.NoError(t, err)
	edited := filepath.Join(t.TempDir(), "catalog.yaml")
	require.NoError(t, os.WriteFile(edited, append(example, []byte("  price_dev_added:\n    project_id: dev_project\n    key_days: 7\n")...), 0o600))
	env["CATALOG_FILE"] = edited

	var out strings.Builder
	err = run(context.Background(), []string{"doctor"}, envOf(env), &out, io.Discard)
	require.ErrorIs(t, err, errDoctorFailed)
	var fails []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.HasPrefix(l, "FAIL") {
			fails = append(fails, l)
		}
	}
	require.Len(t, fails, 1, out.String())
	require.True(t, strings.HasPrefix(fails[0], "FAIL  price price_dev_added [Stripe stand-in] is not in the local Stripe stand-in ("), fails[0])
	require.Contains(t, fails[0], "`fulfiller dev` registers the catalog's prices when it starts, so restart it (make run) after changing the catalog, or fix the price ID")
}
