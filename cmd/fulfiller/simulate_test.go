package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/httpapi"
)

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
