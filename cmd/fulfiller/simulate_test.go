package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/httpapi"
)

func TestDevBannerPrintsTheSimulateCommandForItsPortsAndItWorks(t *testing.T) {
	t.Parallel()
	d := startDev(t, nil)
	service, stripeAddr := d.env["LISTEN_ADDR"], d.env["DEV_STRIPE_ADDR"]
	lines := strings.Split(strings.TrimRight(d.banner, "\n"), "\n")
	command, ok := strings.CutPrefix(lines[len(lines)-1], "  go run ./cmd/fulfiller ")
	require.True(t, ok, "no simulate command at the end of the banner:\n%s", d.banner)
	require.Contains(t, d.banner, fmt.Sprintf("order page       http://%s/orders/{checkout_session_id}", service))
	require.Equal(t, fmt.Sprintf("simulate checkout --price price_dev_monthly --quantity 2 --url http://%s --stripe http://%s",
		service, stripeAddr), command)

	// The command as printed, from a terminal without the service's settings.
	var got strings.Builder
	require.NoError(t, run(t.Context(), strings.Fields(command), envOf(nil), &got, io.Discard))
	require.Contains(t, got.String(), "is fulfilled")
	require.Equal(t, 2, strings.Count(got.String(), "  key "), got.String())
}

func TestDevBannerLeavesOutTheFlagsSimulateDefaultsTo(t *testing.T) {
	t.Parallel()
	dev := config.Config{ListenAddr: devListenAddr, WebhookSecrets: []string{devWebhookSecret}}
	standIn := map[string]string{"STRIPE_API_BASE": "http://" + devStripeAddr}
	require.Equal(t, "Try a purchase from another terminal:\n  go run ./cmd/fulfiller simulate checkout --price price_dev_monthly --quantity 2\n",
		tryNote(dev, standIn))

	dev.ListenAddr = ":8080"
	require.NotContains(t, tryNote(dev, standIn), "--url", "localhost:8080 reaches :8080")

	dev.WebhookSecrets = []string{testWebhookSecret}
	require.Contains(t, tryNote(dev, standIn), `--secret "$STRIPE_WEBHOOK_SECRET"`)

	require.Contains(t, tryNote(dev, map[string]string{}), "simulate needs the Stripe stand-in: it runs when STRIPE_API_KEY is unset")
}

func TestSimulateFlagHelpReadsAsSentences(t *testing.T) {
	t.Parallel()
	for _, step := range []string{"checkout", "cancel"} {
		var stderr strings.Builder
		err := run(context.Background(), []string{"simulate", step, "-h"}, envOf(nil), io.Discard, &stderr)
		require.ErrorIs(t, err, errUsage)
		help := stderr.String()
		require.NotContains(t, help, "make run\n", step)
		require.Contains(t, help, "  -stripe URL\n    \tbase URL of the Stripe stand-in that make run starts", step)
		require.Contains(t, help, "  -url URL\n    \tbase URL of the running service", step)
	}
}

func TestSimulateCancelAfterARefundSaysWhatStateTheOrderIsIn(t *testing.T) {
	t.Parallel()
	b := setupSimulation(t)
	session := b.checkout(t, "subscription")
	out, err := b.simulate(t, "refund", "--session", session)
	require.NoError(t, err, out)

	start := time.Now()
	_, err = b.simulate(t, "cancel", "--session", session)
	require.Error(t, err)
	require.Less(t, time.Since(start), 5*time.Second, "it says so at once rather than waiting for keys that will not change")
	require.ErrorContains(t, err, "order "+session+" is revoked, its keys 2 blacklisted: a refund or dispute already ended its keys")
	require.NotContains(t, err.Error(), "0xc", "no pointers")
	require.NotContains(t, err.Error(), "{", "no Go structs")
}

func TestOrderStateIsASentence(t *testing.T) {
	t.Parallel()
	require.Equal(t, "the last read of order cs_x failed (the service answered GET /v1/orders/cs_x with 404: nope)",
		orderState("cs_x", httpapi.OrderJSON{}, fmt.Errorf("the service answered GET /v1/orders/cs_x with 404: nope")))
	require.Equal(t, "order cs_x is pending, 2 keys still to deliver", orderState("cs_x", httpapi.OrderJSON{Status: "pending", KeysPending: 2}, nil))
	require.Equal(t, "order cs_x is fulfilled, its keys 1 active (ending), 1 blacklisted, 1 more still to deliver",
		orderState("cs_x", httpapi.OrderJSON{Status: "fulfilled", KeysPending: 1, Keys: []httpapi.KeyJSON{
			{Status: "active", Ending: true}, {Status: "blacklisted"}}}, nil))
}
