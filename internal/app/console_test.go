package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/logging"
	"fulfiller/internal/outbound"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi/stripefake"
)

// consoleForm posts a console form with the admin login, from the console
// itself (Sec-Fetch-Site: same-origin), and returns the answer without
// following a redirect.
func (b *bundle) consoleForm(t *testing.T, path string, form url.Values, header ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.AdminURL+path, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.SetBasicAuth(adminUser, adminPassword)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return consoleDo(t, req)
}

// consoleGet reads a console page with the admin login.
func (b *bundle) consoleGet(t *testing.T, path string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.AdminURL+path, nil)
	require.NoError(t, err)
	req.SetBasicAuth(adminUser, adminPassword)
	return consoleDo(t, req)
}

func consoleDo(t *testing.T, req *http.Request) (int, http.Header, string) {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(raw)
}

// auditOf lists the audit log's entries about the order, newest first.
func (b *bundle) auditOf(t *testing.T, sessionID string) []postgres.AuditEntry {
	t.Helper()
	var orderID int64
	require.NoError(t, b.Pool.QueryRow(context.Background(), `SELECT id FROM orders WHERE checkout_session_id = $1`, sessionID).Scan(&orderID))
	entries, err := postgres.ListAudit(context.Background(), b.Pool, postgres.AuditQuery{OrderID: orderID, Limit: 100})
	require.NoError(t, err)
	return entries
}

// TestConsoleNeedsTheAdminLogin: without the login, with a wrong one, or
// with the admin API's bearer token (not a browser's), every console
// route answers 401 asking for the login; without a login configured the
// console is not there, and it is never on the public listener.
func TestConsoleNeedsTheAdminLogin(t *testing.T) {
	t.Parallel()
	b := setup(t, withAdminLogin())
	// Failed credentials are throttled after a burst of 10 per client:
	// the test stays under it.
	paths := []string{"/console/", "/console/orders", "/console/orders/ord_000000000000", "/console/deliveries", "/console/deliveries/1",
		"/console/assets/console.css"}
	for _, path := range paths {
		status, h, _ := send(t, http.MethodGet, b.AdminURL+path, "", nil)
		require.Equal(t, http.StatusUnauthorized, status, "%s without credentials", path)
		require.Contains(t, h.Get("WWW-Authenticate"), "Basic", "%s asks a browser for the login", path)
		status, _, _ = send(t, http.MethodGet, b.URL+path, "", login(adminUser, adminPassword))
		require.Equal(t, http.StatusNotFound, status, "%s is not on the public listener", path)
	}
	for name, header := range map[string]http.Header{
		"wrong password": login(adminUser, adminPassword+"x"),
		"admin token":    bearer(adminToken),
	} {
		status, _, _ := send(t, http.MethodGet, b.AdminURL+"/console/orders", "", header)
		require.Equal(t, http.StatusUnauthorized, status, "the console with %s", name)
	}
	status, h, body := b.consoleGet(t, "/console/")
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, h.Get("Content-Security-Policy"), "script-src 'self'")
	require.NotContains(t, h.Get("Content-Security-Policy"), "unsafe-inline")
	require.Equal(t, "no-store", h.Get("Cache-Control"))
	require.Equal(t, "DENY", h.Get("X-Frame-Options"))

	off := setup(t) // the admin token only: no login, no console
	for _, path := range paths {
		status, _, _ := send(t, http.MethodGet, off.AdminURL+path, "", bearer(adminToken))
		require.Equal(t, http.StatusNotFound, status, "%s without the admin login configured", path)
	}
}

// TestConsoleActionsNeedAReasonAConfirmationAndTheConsoleItself: an action
// without a reason, or unconfirmed, or posted from another site is refused
// and leaves the order and the audit log as they were; confirmed with a
// reason, it is carried out by the admin API's implementation and the
// audit log keeps who, what and why.
func TestConsoleActionsNeedAReasonAConfirmationAndTheConsoleItself(t *testing.T) {
	t.Parallel()
	rc := startReceiver(t, nil)
	b := setup(t, withAdminLogin(), withWebhooks(rc))
	s := b.Stripe.PaidSession("carol@example.com", stripefake.Item{PriceID: "price_not_in_catalog", Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.WaitOrder(t, s.ID, "failed")
	// The webhook's job failed the order, or its fallback fulfil_order did.
	fulfilments := b.Count(t, `SELECT count(*) FROM river_job WHERE kind = 'fulfil_order'`)
	ref := logging.OrderRef(s.ID)
	retry := "/console/orders/" + ref + "/actions/retry"

	status, _, body := b.consoleForm(t, retry, url.Values{"confirm": {"yes"}})
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, body, "give a reason")
	status, _, body = b.consoleForm(t, retry, url.Values{"confirm": {"yes"}, "reason": {"   "}})
	require.Equal(t, http.StatusBadRequest, status, "a blank reason is none")
	require.Contains(t, body, "give a reason")
	status, _, body = b.consoleForm(t, retry, url.Values{"reason": {"catalog fixed"}})
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, body, "tick the confirmation")
	status, _, _ = b.consoleForm(t, retry, url.Values{"confirm": {"yes"}, "reason": {"catalog fixed"}}, "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, status, "a form of another site is refused")
	status, _, _ = b.consoleForm(t, retry, url.Values{"confirm": {"yes"}, "reason": {"catalog fixed"}},
		"Sec-Fetch-Site", "", "Origin", "https://elsewhere.example")
	require.Equal(t, http.StatusForbidden, status, "an Origin of another site is refused")
	// The order.failed event's delivery: its replay is refused likewise.
	d := b.waitDelivery(t, outbound.OrderFailed, "delivered")
	replay := fmt.Sprintf("/console/deliveries/%d/replay", d.ID)
	status, _, body = b.consoleForm(t, replay, url.Values{"confirm": {"yes"}})
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, body, "give a reason")
	status, _, body = b.consoleForm(t, replay, url.Values{"reason": {"resend it"}})
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, body, "tick the confirmation")
	status, _, _ = b.consoleForm(t, replay, url.Values{"confirm": {"yes"}, "reason": {"resend it"}}, "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, status, "a replay from another site is refused")
	status, _, _ = b.consoleForm(t, "/console/deliveries/999999/replay", url.Values{"confirm": {"yes"}, "reason": {"resend it"}})
	require.Equal(t, http.StatusNotFound, status)
	require.Zero(t, b.Count(t, `SELECT replays FROM outbound_deliveries WHERE id = $1`, d.ID), "no replay was queued")
	require.Len(t, rc.requests(), 1)

	require.Empty(t, b.auditOf(t, s.ID), "nothing refused was done")
	require.Equal(t, fulfilments, b.Count(t, `SELECT count(*) FROM river_job WHERE kind = 'fulfil_order'`), "no retry was queued")

	status, h, _ := b.consoleForm(t, retry, url.Values{"confirm": {"yes"}, "reason": {"catalog fixed"}})
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, "/console/orders/"+ref+"?done=retry", h.Get("Location"))
	entries := b.auditOf(t, s.ID)
	require.Len(t, entries, 1)
	require.Equal(t, "retry", entries[0].Action)
	require.Equal(t, "admin:"+adminUser, entries[0].Actor)
	require.Equal(t, "catalog fixed", entries[0].Reason)
	b.WaitOrder(t, s.ID, "failed") // the price is still missing: it fails again, and says so
	status, _, body = b.consoleGet(t, "/console/orders/"+ref+"?done=retry")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "fulfilment is queued again")
	require.Contains(t, body, "catalog fixed")

	status, _, body = b.consoleForm(t, "/console/orders/"+ref+"/actions/nonsense", url.Values{"confirm": {"yes"}, "reason": {"why not"}})
	require.Equal(t, http.StatusNotFound, status, body)
	require.Len(t, b.auditOf(t, s.ID), 1)
}

// TestConsoleKeyActionNamesTheUnitNotTheKey: a key action names the unit;
// the console finds its key, queues the admin API's action with the
// reason, and the audit log names the key by its last characters.
func TestConsoleKeyActionNamesTheUnitNotTheKey(t *testing.T) {
	t.Parallel()
	b := setup(t, withAdminLogin())
	s, o := b.Buy(t, "dave@example.com", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	ref, key := logging.OrderRef(s.ID), o.Keys[0].UserKey
	var unit int64
	require.NoError(t, b.Pool.QueryRow(context.Background(), `SELECT id FROM order_keys WHERE user_key = $1`, key).Scan(&unit))
	path := fmt.Sprintf("/console/orders/%s/keys/%d/actions", ref, unit)

	status, _, body := b.consoleForm(t, path, url.Values{"action": {"revoke"}, "confirm": {"yes"}})
	require.Equal(t, http.StatusBadRequest, status, body)
	status, _, _ = b.consoleForm(t, fmt.Sprintf("/console/orders/%s/keys/%d/actions", ref, unit+1000),
		url.Values{"action": {"revoke"}, "confirm": {"yes"}, "reason": {"chargeback by email"}})
	require.Equal(t, http.StatusNotFound, status, "a unit of no such order")
	require.Empty(t, b.auditOf(t, s.ID))

	status, _, body = b.consoleForm(t, path, url.Values{"action": {"revoke"}, "confirm": {"yes"}, "reason": {"chargeback by email"}})
	require.Equal(t, http.StatusSeeOther, status, body)
	b.waitKeys(t, s.ID, "fulfilled", "blacklisted")
	entries := b.auditOf(t, s.ID)
	require.Len(t, entries, 1)
	require.Equal(t, "revoke", entries[0].Action)
	require.Equal(t, logging.MaskKey(key), entries[0].KeyTail)
	require.Equal(t, "chargeback by email", entries[0].Reason)

	status, _, body = b.consoleGet(t, "/console/orders/"+ref)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "Support action revoke")
	require.Contains(t, body, "revoked")
	require.NotContains(t, body, key)
}

// TestConsoleSearchFindsAnOrderEveryWayItIsNamed: by email, whole key,
// a key's last characters, order reference, Checkout Session ID and
// Stripe customer, each from the POST body; the answers hold neither the
// whole key nor the session ID, and an unknown name finds nothing.
func TestConsoleSearchFindsAnOrderEveryWayItIsNamed(t *testing.T) {
	t.Parallel()
	b := setup(t, withAdminLogin())
	customer := "cus_console" + strings.Repeat("x", 8)
	s := b.Stripe.PaidSession("Erin@Example.com", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	s.Customer = customer
	b.Stripe.PutSession(s)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	o := b.WaitOrder(t, s.ID, "fulfilled")
	ref, key := logging.OrderRef(s.ID), o.Keys[0].UserKey

	for _, q := range []string{"erin@example.com", key, key[len(key)-6:], ref, s.ID, customer} {
		status, _, body := b.consoleForm(t, "/console/orders", url.Values{"q": {q}})
		require.Equal(t, http.StatusOK, status, "search %q: %s", q, body)
		require.Contains(t, body, "1 order found", "search by %q", q)
		require.Contains(t, body, `href="/console/orders/`+ref+`"`, "search by %q", q)
		require.NotContains(t, body, s.ID, "no session ID in the answer to %q", q)
		if q != key {
			require.NotContains(t, body, key, "no whole key in the answer to %q", q)
		}
	}
	status, _, body := b.consoleForm(t, "/console/orders", url.Values{"q": {"nobody@example.com"}})
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "0 orders found")
	status, _, body = b.consoleForm(t, "/console/orders", url.Values{"q": {"ab"}})
	require.Equal(t, http.StatusBadRequest, status, "two characters would match anyone's key")
	require.Contains(t, body, "last 4 characters")

	status, _, _ = b.consoleGet(t, "/console/orders/"+s.ID)
	require.Equal(t, http.StatusNotFound, status, "a session ID never addresses a console page")
	status, _, body = b.consoleGet(t, "/console/orders/"+ref)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, logging.MaskKey(key))
	require.NotContains(t, body, key)
	require.NotContains(t, body, s.ID)
}
