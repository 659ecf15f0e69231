package app_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/logging"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi/stripefake"
)

// The admin API takes the reason the console asks for, on every support
// action, and the audit log keeps it as the console's: optional, so an
// operator's script that gives none is audited with no reason, and
// bounded as in the console.
func TestAdminAPIActionsKeepTheirReasonInTheAuditLog(t *testing.T) {
	t.Parallel()
	b := setup(t)
	failed := b.Stripe.PaidSession("bob@example.com", stripefake.Item{PriceID: "price_not_in_catalog", Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", failed.ID))
	b.WaitOrder(t, failed.ID, "failed")
	ref := logging.OrderRef(failed.ID)
	_, bought := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	key := bought.Keys[0].UserKey

	status, _, body := send(t, http.MethodPost, b.AdminURL+"/v1/admin/orders/"+ref+"/retry",
		`{"reason":"two`+"\\n"+`lines"}`, bearer(adminToken))
	require.Equal(t, http.StatusBadRequest, status, body)
	require.Contains(t, body, "one line")
	status, _, body = send(t, http.MethodPost, b.AdminURL+"/v1/admin/orders/"+ref+"/retry", `{"why":"x"}`, bearer(adminToken))
	require.Equal(t, http.StatusBadRequest, status, body)
	require.Zero(t, b.Count(t, `SELECT count(*) FROM support_audit`), "nothing done, nothing audited")

	status, _, body = send(t, http.MethodPost, b.AdminURL+"/v1/admin/orders/"+ref+"/retry",
		`{"reason":"price added to the catalog"}`, bearer(adminToken))
	require.Equal(t, http.StatusAccepted, status, body)
	b.WaitOrder(t, failed.ID, "failed")
	status, _, body = send(t, http.MethodPost, b.AdminURL+"/v1/admin/orders/"+ref+"/retry", "", bearer(adminToken))
	require.Equal(t, http.StatusAccepted, status, body)
	status, _, body = send(t, http.MethodPost, b.AdminURL+"/v1/admin/keys/set-discord",
		`{"user_key":"`+key+`","discord_id":"123456789012345678","reason":"buyer asked in a ticket"}`, bearer(adminToken))
	require.Equal(t, http.StatusAccepted, status, body)

	entries, err := postgres.ListAudit(context.Background(), b.Pool, postgres.AuditQuery{Limit: 10})
	require.NoError(t, err)
	require.Len(t, entries, 3)
	setDiscord, bare, retry := entries[0], entries[1], entries[2]
	require.Equal(t, "set-discord", setDiscord.Action)
	require.Equal(t, "buyer asked in a ticket", setDiscord.Reason)
	require.Equal(t, "retry", bare.Action)
	require.Empty(t, bare.Reason, "no body: audited with no reason")
	require.Equal(t, "retry", retry.Action)
	require.Equal(t, "admin-token", retry.Actor)
	require.Equal(t, ref, retry.OrderRef)
	require.Equal(t, "price added to the catalog", retry.Reason)
}
