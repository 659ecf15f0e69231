package app_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/jobs"
	"fulfiller/internal/order"
	"fulfiller/internal/stripeapi/stripefake"
)

// readKeysAgain has the service read its keys from Luarmor as the periodic
// refresh does (keys delivered over an hour ago), and waits for it: what a
// buyer did with a key since (running it binds it) is then known.
func (b *bundle) readKeysAgain(t *testing.T) {
	t.Helper()
	b.waitIdle(t)
	_, err := b.Pool.Exec(context.Background(), `UPDATE order_keys SET delivered_at = now() - interval '2 hours', checked_at = NULL`)
	require.NoError(t, err)
	_, err = b.Pool.Exec(context.Background(), `UPDATE ledger_keys SET hwid_checked_at = now() - interval '2 hours'`)
	require.NoError(t, err)
	_, err = b.Main.River.Insert(context.Background(), jobs.RefreshKeysArgs{}, nil)
	require.NoError(t, err)
	b.waitIdle(t)
}

// grantStates maps each grant of the order's units to its state, by what
// paid for it.
func (b *bundle) grantStates(t *testing.T, sessionID string) map[string]string {
	t.Helper()
	rows, err := b.Pool.Query(context.Background(), `SELECT g.source, g.state FROM key_grants g
		JOIN order_keys k ON k.id = g.order_key_id WHERE k.checkout_session_id = $1`, sessionID)
	require.NoError(t, err)
	out := map[string]string{}
	for rows.Next() {
		var source, state string
		require.NoError(t, rows.Scan(&source, &state))
		out[source] = state
	}
	require.NoError(t, rows.Err())
	return out
}

// refundFirstInvoice registers the checkout's own invoice of a
// subscription and a charge that paid it with Stripe, and delivers that
// charge's full refund.
func (b *bundle) refundFirstInvoice(t *testing.T, s stripefake.Session) {
	t.Helper()
	b.Stripe.PutObject(stripefake.KindInvoice, s.Invoice, map[string]any{"object": "invoice", "subscription": s.Subscription,
		"billing_reason": "subscription_create", "status": "paid", "paid": true, "customer": s.Customer})
	pi := fulfillertest.NewID("pi_")
	b.Deliver(t, b.refund(t, b.charge(t, pi, s.Invoice), pi, s.Invoice, 1000))
	b.waitIdle(t)
}

// A subscription renewed, and then its first payment refunded: the ledger
// takes back the first period only, so the key keeps working for the
// renewed one. The order is not revoked, its subscription not cancelled,
// and Luarmor, the ledger, the order API and the page agree, the page
// naming the refund.
func TestRenewedSubscriptionWhoseFirstPaymentIsRefundedKeepsItsKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.subscriptionOrder(t, 1)
	key := o.Keys[0].UserKey
	require.NoError(t, b.Luarmor.Execute(project, key, "hwid-1"))
	renewedEnd := time.Now().Unix() + 60*day
	renewal, ev := b.invoice(t, s.Subscription, "subscription_cycle", renewedEnd)
	b.Deliver(t, ev)
	b.waitIdle(t)
	require.Equal(t, renewedEnd+day, b.user(t, key).AuthExpire)

	b.refundFirstInvoice(t, s)
	b.refundFirstInvoice(t, s) // Stripe repeats itself

	require.Equal(t, map[string]string{"invoice:" + s.Invoice: "revoked", "invoice:" + renewal: "active"}, b.grantStates(t, s.ID),
		"the ledger took back the first period only")
	u := b.user(t, key)
	require.False(t, u.IsBanned(), "the key works in Luarmor")
	require.Equal(t, renewedEnd+day, u.AuthExpire, "for the renewed period")
	got := b.waitKeys(t, s.ID, "fulfilled", "active")
	require.Equal(t, "active", got.State)
	require.Equal(t, string(order.ReasonFirstPaymentRefunded), got.StateReason)
	require.Equal(t, 1, got.KeysWorking)
	require.Equal(t, httpapi.KeyStateJSON{State: "active", StateReason: "first_payment_refunded", HWIDBound: new(true)}, got.Keys[0].KeyStateJSON)
	require.Equal(t, renewedEnd+day, *got.Keys[0].AuthExpire)
	require.Zero(t, b.stripeCalls(http.MethodDelete, "/v1/subscriptions/"+s.Subscription), "the subscription goes on")

	_, _, page := send(t, http.MethodGet, b.URL+"/orders/"+s.ID, "", nil)
	require.Contains(t, page, `data-state="delivered"`)
	require.Contains(t, page, "Your key is ready")
	require.Contains(t, page, "Your first payment was refunded")
	require.NotContains(t, page, "revoked")
}

// The same refund handled before the renewal (Stripe's events cross):
// the order is revoked at first, as nothing else paid for it, and the
// renewal's period, once granted, holds the key and the order again.
func TestFirstPaymentRefundedBeforeTheRenewalIsHandledEndsHeldByTheRenewal(t *testing.T) {
	t.Parallel()
	b := setup(t, withPolicy(func(p *order.Policy) { p.CancelSubscriptionOnRevoke = false }))
	s, o := b.subscriptionOrder(t, 1)
	key := o.Keys[0].UserKey
	require.NoError(t, b.Luarmor.Execute(project, key, "hwid-1"))
	renewedEnd := time.Now().Unix() + 60*day
	_, ev := b.invoice(t, s.Subscription, "subscription_cycle", renewedEnd)

	b.refundFirstInvoice(t, s)
	revoked := b.waitKeys(t, s.ID, "revoked", "blacklisted")
	require.Equal(t, "revoked", revoked.State)
	require.Equal(t, "refund", revoked.StateReason)
	require.True(t, b.user(t, key).IsBanned())

	b.Deliver(t, ev)
	b.waitIdle(t)
	got := b.waitKeys(t, s.ID, "fulfilled", "active")
	require.Equal(t, "first_payment_refunded", got.StateReason)
	u := b.user(t, key)
	require.False(t, u.IsBanned())
	require.Equal(t, renewedEnd+day, u.AuthExpire)
}
