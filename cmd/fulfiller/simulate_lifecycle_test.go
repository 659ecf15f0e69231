package main

import (
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/luarmor"
)

const simProject = "sim_project"

// simBundle is the service that simulate's steps drive, with the price
// `make run` sells, and the flags that point simulate at it and its
// Stripe stand-in.
type simBundle struct {
	*fulfillertest.Service
	flags []string // --url, --stripe, --secret of the running service
}

func setupSimulation(t *testing.T) *simBundle {
	t.Helper()
	svc := fulfillertest.StartService(t, fulfillertest.Options{Catalog: &catalog.Catalog{Prices: map[string]catalog.Product{
		"price_dev_monthly": {ProjectID: simProject, KeyDays: 30},
	}}})
	return &simBundle{Service: svc, flags: []string{"--url", svc.URL, "--stripe", svc.Stripe.URL,
		"--secret", svc.Secret, "--timeout", "20s"}}
}

// simulate runs `fulfiller simulate step flags...` and returns its output.
func (b *simBundle) simulate(t *testing.T, step string, flags ...string) (string, error) {
	t.Helper()
	if step != "checkout" {
		flags = append(flags, "--stripe-key", b.Stripe.APIKey)
	}
	var out strings.Builder
	err := run(context.Background(), append(append([]string{"simulate", step}, flags...), b.flags...), envOf(nil), &out, io.Discard)
	return out.String(), err
}

var sessionLine = regexp.MustCompile(`sent checkout.session.completed for (cs_test_[0-9a-f]+)`)

// checkout buys two keys and returns the session ID.
func (b *simBundle) checkout(t *testing.T, mode string) string {
	t.Helper()
	out, err := b.simulate(t, "checkout", "--price", "price_dev_monthly", "--quantity", "2", "--mode", mode)
	require.NoError(t, err, out)
	m := sessionLine.FindStringSubmatch(out)
	require.NotNil(t, m, out)
	return m[1]
}

// keys returns the users the printed output names, as Luarmor holds them.
func (b *simBundle) keys(t *testing.T, out string) []luarmor.User {
	t.Helper()
	var users []luarmor.User
	for _, m := range regexp.MustCompile(`key ([A-Za-z0-9]{32}) `).FindAllStringSubmatch(out, -1) {
		u, ok := b.Luarmor.User(simProject, m[1])
		require.True(t, ok, m[1])
		users = append(users, u)
	}
	require.Len(t, users, 2, out)
	return users
}

func TestSimulateDisputeBansTheKeysAndWinningLiftsTheBan(t *testing.T) {
	t.Parallel()
	b := setupSimulation(t)
	session := b.checkout(t, "payment")

	out, err := b.simulate(t, "dispute", "--session", session)
	require.NoError(t, err, out)
	require.Contains(t, out, "sent charge.dispute.created for "+session)
	require.Contains(t, out, "order "+session+" is revoked")
	require.Equal(t, 2, strings.Count(out, "  blacklisted  "), out)
	for _, u := range b.keys(t, out) {
		require.True(t, u.IsBanned())
		require.Equal(t, "Payment disputed", u.BanReason)
	}

	out, err = b.simulate(t, "dispute-won", "--session", session)
	require.NoError(t, err, out)
	require.Contains(t, out, "sent charge.dispute.closed for "+session)
	require.Contains(t, out, "order "+session+" is fulfilled")
	require.Equal(t, 2, strings.Count(out, "  active  "), out)
	for _, u := range b.keys(t, out) {
		require.False(t, u.IsBanned())
	}
}

func TestSimulateRefundRevokesTheKeys(t *testing.T) {
	t.Parallel()
	b := setupSimulation(t)
	for _, mode := range []string{"payment", "subscription"} {
		session := b.checkout(t, mode)
		out, err := b.simulate(t, "refund", "--session", session)
		require.NoError(t, err, out)
		require.Contains(t, out, "sent charge.refunded for "+session)
		require.Contains(t, out, "order "+session+" is revoked", mode)
		for _, u := range b.keys(t, out) {
			require.True(t, u.IsBanned(), mode)
			require.Equal(t, "Payment refunded", u.BanReason, mode)
		}
	}
}

func TestSimulateRenewalExtendsAndCancelEndsTheSubscription(t *testing.T) {
	t.Parallel()
	b := setupSimulation(t)
	session := b.checkout(t, "subscription")

	start := time.Now()
	out, err := b.simulate(t, "renewal", "--session", session)
	require.NoError(t, err, out)
	require.Contains(t, out, "sent invoice.paid for "+session)
	require.Contains(t, out, ", paid through ")
	require.Equal(t, 2, strings.Count(out, "  active  expires "), out)
	paidFor := start.Add(2 * simulatedPeriod).Unix()
	for _, u := range b.keys(t, out) {
		require.GreaterOrEqual(t, u.AuthExpire, paidFor, "two periods paid: the checkout's and the renewal's")
	}

	out, err = b.simulate(t, "renewal", "--session", session)
	require.NoError(t, err, out)
	for _, u := range b.keys(t, out) {
		require.GreaterOrEqual(t, u.AuthExpire, start.Add(3*simulatedPeriod).Unix(), "each renewal pays one more period")
	}

	out, err = b.simulate(t, "cancel", "--session", session)
	require.NoError(t, err, out)
	require.Contains(t, out, "sent customer.subscription.deleted for "+session)
	require.Equal(t, 2, strings.Count(out, "  ending"), out)
	for _, u := range b.keys(t, out) {
		require.False(t, u.IsBanned(), "a cancelled subscription runs out, it is not banned")
	}

	_, err = b.simulate(t, "cancel", "--session", session)
	require.ErrorContains(t, err, "already cancelled?")
}

func TestSimulateLifecycleRefusesWhatCannotFollow(t *testing.T) {
	t.Parallel()
	b := setupSimulation(t)
	session := b.checkout(t, "payment")
	for _, step := range []string{"renewal", "cancel"} {
		_, err := b.simulate(t, step, "--session", session)
		require.ErrorContains(t, err, "is a one-off payment", step)
	}
	_, err := b.simulate(t, "refund", "--session", "cs_test_neverseen")
	require.ErrorContains(t, err, "made with `simulate checkout`")
	_, err = b.simulate(t, "refund")
	require.ErrorIs(t, err, errUsage)
}
