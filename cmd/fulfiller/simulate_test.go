package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/postgres/postgrestest"
)

func TestDevBannerPrintsTheSimulateCommandForItsPortsAndItWorks(t *testing.T) {
	t.Parallel()
	service, admin, luarmorAddr, stripeAddr := freePort(t), freePort(t), freePort(t), freePort(t)
	env := map[string]string{
		"DATABASE_URL":     postgrestest.NewURL(t),
		"LISTEN_ADDR":      fmt.Sprintf("127.0.0.1:%d", service),
		"ADMIN_ADDR":       fmt.Sprintf("127.0.0.1:%d", admin),
		"DEV_LUARMOR_ADDR": fmt.Sprintf("127.0.0.1:%d", luarmorAddr),
		"DEV_STRIPE_ADDR":  fmt.Sprintf("127.0.0.1:%d", stripeAddr),
		"CATALOG_FILE":     "../../catalog.example.yaml",
		"LOG_LEVEL":        "error",
	}
	ctx, cancel := context.WithCancel(context.Background())
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev"}, envOf(env), w, io.Discard)
		_ = w.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err, "dev stops cleanly when its context ends")
		case <-time.After(15 * time.Second):
			t.Error("dev did not stop")
		}
	})

	var banner strings.Builder
	var command string
	lines := bufio.NewScanner(out)
	for command == "" && lines.Scan() {
		banner.WriteString(lines.Text() + "\n")
		if c, ok := strings.CutPrefix(lines.Text(), "  go run ./cmd/fulfiller "); ok {
			command = c
		}
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	require.NotEmpty(t, command, "no simulate command in the banner:\n%s", banner.String())
	require.Contains(t, banner.String(), fmt.Sprintf("order page       http://127.0.0.1:%d/orders/{checkout_session_id}", service))
	require.Equal(t, fmt.Sprintf("simulate checkout --price price_dev_monthly --quantity 2 --url http://127.0.0.1:%d --stripe http://127.0.0.1:%d",
		service, stripeAddr), command)

	// The banner comes just before the service listens.
	require.Eventually(t, func() bool {
		_, err := getOrder(ctx, fmt.Sprintf("http://127.0.0.1:%d/v1/orders/cs_test_none", service))
		return err != nil && strings.Contains(err.Error(), "answered")
	}, 10*time.Second, 50*time.Millisecond)

	// The command as printed, from a terminal without the service's settings.
	var got strings.Builder
	require.NoError(t, run(ctx, strings.Fields(command), envOf(nil), &got, io.Discard))
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
