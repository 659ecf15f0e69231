package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/order"
	"fulfiller/internal/stripeapi/stripefake"
)

const (
	supportProject = "5b26666d7777a7777c77c4"
	supportPrice   = "price_support30"
)

// supportService is the running service that the support commands
// (orders, keys: both open it through openSupport) act through, selling
// one price of one Luarmor project; the commands run with its environment
// (fulfillertest.Service.Env), as on an operator's terminal.
type supportService struct {
	*fulfillertest.Service
}

func startSupport(t *testing.T, policy ...func(*order.Policy)) *supportService {
	t.Helper()
	return &supportService{fulfillertest.StartService(t, fulfillertest.Options{
		Catalog: &catalog.Catalog{Prices: map[string]catalog.Product{supportPrice: {ProjectID: supportProject, KeyDays: 30}}},
		Luarmor: sandbox.Options{Projects: []string{supportProject}},
		Configure: func(c *config.Config) {
			for _, change := range policy {
				change(&c.Policy)
			}
		},
	})}
}

// buy pays for one key, waits until the order is fulfilled and returns
// the session and the key.
func (s *supportService) buy(t *testing.T) (stripefake.Session, string) {
	t.Helper()
	sess, o := s.Buy(t, "support@example.com", stripefake.Item{PriceID: supportPrice, Quantity: 1})
	require.Len(t, o.Keys, 1)
	require.NotEmpty(t, o.Keys[0].UserKey)
	return sess, o.Keys[0].UserKey
}

// user is the key as Luarmor holds it.
func (s *supportService) user(t *testing.T, userKey string) luarmor.User {
	t.Helper()
	u, ok := s.Luarmor.User(supportProject, userKey)
	require.True(t, ok, "no key %s in the sandbox", userKey)
	return u
}

// cli runs the command and returns its output and error.
func (s *supportService) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	err := run(context.Background(), args, envOf(s.Env()), &out, io.Discard)
	return out.String(), err
}

// cliKey runs the command with userKey on its stdin, as an operator
// pastes or pipes it ("-" in args reads it).
func (s *supportService) cliKey(t *testing.T, userKey string, args ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	err := runWith(context.Background(), args, envOf(s.Env()), strings.NewReader(userKey+"\n"), &out, io.Discard)
	return out.String(), err
}

// orderAnswer is the HTTP status of the order API for a credential.
func (s *supportService) orderAnswer(t *testing.T, id string) int {
	t.Helper()
	status, _ := s.GetOrder(t, id)
	return status
}

func TestOrdersCommandsFindShowAndRetryThroughTheRunningService(t *testing.T) {
	t.Parallel()
	s := startSupport(t)
	sess, key := s.buy(t)

	out, err := s.cliKey(t, key, "orders", "find", "--key", "-")
	require.NoError(t, err)
	require.Contains(t, out, sess.ID)
	ref := strings.Fields(out)[0]
	require.True(t, strings.HasPrefix(ref, "ord_"))

	out, err = s.cli(t, "orders", "show", ref)
	require.NoError(t, err)
	require.Contains(t, out, "status fulfilled")
	require.Contains(t, out, key, "the operator's terminal shows full keys")

	_, err = s.cli(t, "orders", "retry", sess.ID)
	require.ErrorContains(t, err, "not failed")
}

// An early fraud warning revoked the order; support decides the payment
// stands and lifts it from the command line: the key works again.
func TestLiftRevocationCommandRestoresAnOrderAFraudWarningRevoked(t *testing.T) {
	t.Parallel()
	s := startSupport(t, func(p *order.Policy) { p.RevokeOnEarlyFraudWarning = true })
	sess, key := s.buy(t)
	charge, efw := fulfillertest.NewID("ch_"), fulfillertest.NewID("issfr_")
	s.Stripe.PutObject(stripefake.KindCharge, charge, map[string]any{"payment_intent": sess.PaymentIntent, "amount": 3000, "paid": true})
	warning, err := json.Marshal(map[string]any{
		"id": efw, "object": "radar.early_fraud_warning", "charge": charge, "payment_intent": sess.PaymentIntent,
		"fraud_type": "made_with_stolen_card", "actionable": true,
	})
	require.NoError(t, err)
	s.Deliver(t, fulfillertest.Event(t, "radar.early_fraud_warning.created", warning))
	s.WaitOrderFor(t, sess.ID, "revoked with its key blacklisted", func(o httpapi.OrderJSON) bool {
		return o.Status == "revoked" && len(o.Keys) == 1 && o.Keys[0].Status == "blacklisted"
	})
	require.Equal(t, 1, s.user(t, key).Banned)

	out, err := s.cli(t, "orders", "show", sess.ID)
	require.NoError(t, err)
	require.Contains(t, out, "early_fraud_warning "+efw)

	out, err = s.cli(t, "orders", "lift-revocation", sess.ID, efw, "--wait", "30s")
	require.NoError(t, err, out)
	require.Contains(t, out, "is fulfilled")
	require.Contains(t, out, "active")
	require.NotContains(t, out, key, "the answer names the key by its last characters only")
	require.Equal(t, 0, s.user(t, key).Banned)
	status, o := s.GetOrder(t, sess.ID)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "fulfilled", o.Status)
	require.Len(t, o.Keys, 1)
	require.Equal(t, "active", o.Keys[0].Status)

	_, err = s.cli(t, "orders", "lift-revocation", sess.ID, efw)
	require.ErrorContains(t, err, "lifted already")
	_, err = s.cli(t, "orders", "lift-revocation", sess.ID, "issfr_nosuchwarning")
	require.ErrorContains(t, err, "no revocation issfr_nosuchwarning")
	_, err = s.cli(t, "orders", "lift-revocation", sess.ID)
	require.ErrorIs(t, err, errUsage)
}

func TestRotateLinkCommandRevokesTheSessionIDAndSaysWhyNoEmailWent(t *testing.T) {
	t.Parallel()
	s := startSupport(t)
	sess, _ := s.buy(t)
	require.Equal(t, http.StatusOK, s.orderAnswer(t, sess.ID))

	_, err := s.cli(t, "orders", "rotate-link")
	require.ErrorIs(t, err, errUsage)
	_, err = s.cli(t, "orders", "rotate-link", sess.ID, "--reason", "two\nlines")
	require.ErrorContains(t, err, "one line")

	out, err := s.cli(t, "orders", "rotate-link", sess.ID, "--reason", "posted on a forum")
	require.NoError(t, err)
	require.Contains(t, out, "no longer open it (access generation 2)")
	require.Contains(t, out, "no email was queued: mail is off")
	require.NotContains(t, out, sess.ID, "the terminal names the order by its reference")
	require.Equal(t, http.StatusNotFound, s.orderAnswer(t, sess.ID))
}
