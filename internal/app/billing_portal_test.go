package app_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/logging"
	"fulfiller/internal/logging/logtest"
	"fulfiller/internal/stripeapi/stripefake"
)

// manageFormPattern is the order page's Manage subscription form.
var manageFormPattern = regexp.MustCompile(`<form class="manage-subscription" method="post" action="(/orders/(ol_[A-Za-z0-9_-]+)/manage-subscription)">`)

// manageAction is the target of the order page's Manage subscription form
// ("" when the page has none) and the page.
func (b *bundle) manageAction(t *testing.T, orderID string) (string, string) {
	t.Helper()
	status, _, page := send(t, http.MethodGet, b.URL+"/orders/"+orderID, "", nil)
	require.Equal(t, http.StatusOK, status)
	m := manageFormPattern.FindStringSubmatch(page)
	if m == nil {
		require.NotContains(t, page, "manage-subscription", "no other form or link to it either")
		return "", page
	}
	return m[1], page
}

// postManage posts the Manage subscription form to path as a browser on
// the service's own page does (Sec-Fetch-Site: same-origin), with more
// headers in pairs ("" deletes one). Unlike send it does not follow the
// answer's redirect: the 303 and its Location are what is checked.
func (b *bundle) postManage(t *testing.T, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, b.URL+path, strings.NewReader(""))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

// manageState is the data-state of a manage page's section.
func manageState(t *testing.T, page string) string {
	t.Helper()
	m := regexp.MustCompile(`<section class="card subscription" data-state="([a-z_]+)">`).FindStringSubmatch(page)
	require.NotNil(t, m, "a manage page: %s", page)
	return m[1]
}

// A subscription bought by a Stripe customer has a Manage subscription
// button; a one-off purchase, and a subscription Stripe recorded no
// customer for, have none, and their manage page says why.
func TestManageSubscriptionButtonShowsOnlyForASubscriptionWithACustomer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub, _ := b.subscriptionOrder(t, 1)
	oneOff, _ := b.buy(t, stripefake.Item{PriceID: priceLife, Quantity: 1})
	noCustomer := stripefake.Session{ID: fulfillertest.NewID("cs_test_"), Mode: "subscription", PaymentStatus: "paid", Status: "complete",
		CustomerEmail: defaultMail, Subscription: fulfillertest.NewID("sub_"), Invoice: fulfillertest.NewID("in_"),
		Items: []stripefake.Item{{PriceID: priceMonth, Quantity: 1, Recurring: true}}}
	b.Stripe.PutSession(noCustomer)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", noCustomer.ID))
	b.WaitOrder(t, noCustomer.ID, "fulfilled")

	action, page := b.manageAction(t, sub.ID)
	require.NotEmpty(t, action, "a subscription's page has the button")
	require.Contains(t, page, ">Manage subscription</button>")
	require.NotContains(t, action, sub.ID, "the form posts by a signed link, never the Checkout Session ID")
	status, _, manage := send(t, http.MethodGet, b.URL+action, "", nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "offer", manageState(t, manage))
	require.Contains(t, manage, logging.OrderRef(sub.ID))

	for _, c := range []struct{ id, state string }{{oneOff.ID, "no_subscription"}, {noCustomer.ID, "no_customer"}} {
		action, _ := b.manageAction(t, c.id)
		require.Empty(t, action, c.state)
		status, _, page := send(t, http.MethodGet, b.URL+"/orders/"+c.id+"/manage-subscription", "", nil)
		require.Equal(t, http.StatusConflict, status, c.state)
		require.Equal(t, c.state, manageState(t, page))
		require.NotContains(t, page, `method="post"`, "%s: nothing to press", c.state)
		posted, page := b.postManage(t, "/orders/"+c.id+"/manage-subscription")
		require.Equal(t, http.StatusConflict, posted.StatusCode, c.state)
		require.Equal(t, c.state, manageState(t, page))
	}
	for _, id := range []string{"not-a-session", fulfillertest.NewID("cs_test_"), "ol_" + strings.Repeat("A", 75)} {
		status, _, page := send(t, http.MethodGet, b.URL+"/orders/"+id+"/manage-subscription", "", nil)
		require.Equal(t, http.StatusNotFound, status, id)
		require.Equal(t, "not_found", manageState(t, page))
	}
	require.Empty(t, b.Stripe.BillingPortalSessions(), "nothing above opened a portal session")
}

// The button opens Stripe's customer portal for the order's own customer,
// returning to the order page by a signed link; the portal URL is in the
// Location header only. A form posted from another site is refused.
func TestManageSubscriptionOpensThePortalOfTheOrdersCustomer(t *testing.T) {
	t.Parallel()
	var logs logtest.Buffer
	b := setup(t, withLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	s, o := b.subscriptionOrder(t, 1)
	b.buy(t, stripefake.Item{PriceID: priceLife, Quantity: 1}) // another customer's order

	action, _ := b.manageAction(t, s.ID)
	require.NotEmpty(t, action)
	_, orderHeader, _ := send(t, http.MethodGet, b.URL+"/orders/"+s.ID, "", nil)
	require.Contains(t, orderHeader.Get("Content-Security-Policy"), "form-action 'self' "+b.Stripe.URL+";",
		"the form may be redirected to the portal, and there only")

	// Cross-site: refused before anything is read or asked.
	for _, header := range [][]string{
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site"},
		{"Sec-Fetch-Site", "", "Origin", "https://attacker.example"}, // a browser without Fetch Metadata
	} {
		resp, page := b.postManage(t, action, header...)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "%v", header)
		require.Equal(t, "cross_site", manageState(t, page))
		require.Contains(t, page, "Open your order page and press Manage subscription there")
	}
	require.Empty(t, b.Stripe.BillingPortalSessions(), "a cross-site post opens no session")

	resp, body := b.postManage(t, action)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	sessions := b.Stripe.BillingPortalSessions()
	require.Len(t, sessions, 1)
	portal := sessions[0]
	require.Equal(t, s.Customer, portal.Customer, "the order's own customer")
	require.Equal(t, portal.URL, resp.Header.Get("Location"))
	require.True(t, strings.HasPrefix(portal.URL, b.Stripe.URL+"/_fake/portal/session/"), portal.URL)
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	require.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"))
	require.Empty(t, body, "the portal URL is in Location and nowhere else")

	// The portal returns to the order page (the request's address, with
	// PUBLIC_BASE_URL unset), by a signed link, which opens the order.
	require.True(t, strings.HasPrefix(portal.ReturnURL, b.URL+"/orders/ol_"), portal.ReturnURL)
	require.NotContains(t, portal.ReturnURL, s.ID)
	status, _, backPage := send(t, http.MethodGet, portal.ReturnURL, "", nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, backPage, o.Keys[0].UserKey)

	// The stand-in's portal page is where the browser lands.
	status, _, landedPage := send(t, http.MethodGet, portal.URL, "", nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, landedPage, `<code id="customer">`+s.Customer+`</code>`)

	// A browser without Fetch Metadata, on the service's own page, sends
	// its Origin: the same host passes.
	resp, _ = b.postManage(t, action, "Sec-Fetch-Site", "", "Origin", b.URL)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Len(t, b.Stripe.BillingPortalSessions(), 2)

	requireNoAccessInLogs(t, logs.String(), s.ID, b.Stripe.BillingPortalSessions())
}

// requireNoAccessInLogs: no line grants access to the order or the
// customer's billing, whatever went on.
func requireNoAccessInLogs(t *testing.T, logs, sessionID string, sessions []stripefake.PortalSession) {
	t.Helper()
	require.NotContains(t, logs, sessionID)
	require.NotContains(t, logs, "/_fake/portal/session/", "no portal URL")
	require.NotRegexp(t, `ol_[A-Za-z0-9_-]{20}`, logs, "no order link")
	for _, p := range sessions {
		require.NotContains(t, logs, p.URL)
		require.NotContains(t, logs, p.ReturnURL)
	}
}

// Every way Stripe can fail to open the portal is a page saying what to
// do, with the order's reference; the operator's log line says what to
// fix and grants nothing. The buyer's requests are rate-limited.
func TestManageSubscriptionFailuresAreClearPages(t *testing.T) {
	t.Parallel()
	var logs logtest.Buffer
	const returnURL = "https://shop.example/account?tab=billing"
	b := setup(t, withLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		withConfig(func(c *config.Config) { c.BillingPortalReturnURL = returnURL }))
	s, _ := b.subscriptionOrder(t, 1)
	ref := logging.OrderRef(s.ID)
	action, _ := b.manageAction(t, s.ID)

	resp, _ := b.postManage(t, action)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, returnURL, b.Stripe.BillingPortalSessions()[0].ReturnURL, "BILLING_PORTAL_RETURN_URL, as it is")

	// The shop never saved its portal settings in Stripe.
	b.Stripe.SetBillingPortalConfigured(false)
	resp, page := b.postManage(t, action)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "not_configured", manageState(t, page))
	require.Contains(t, page, "contact the shop and quote the order reference below")
	require.Contains(t, page, ref)
	require.Empty(t, resp.Header.Get("Retry-After"), "retrying changes nothing until the shop acts")
	require.NotContains(t, page, `method="post"`)
	require.Contains(t, logs.String(), "Stripe has no customer portal configuration in this mode")
	b.Stripe.SetBillingPortalConfigured(true)

	// Stripe down.
	b.Stripe.FailNext("/v1/billing_portal/sessions", http.StatusInternalServerError, 1)
	resp, page = b.postManage(t, action)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "unavailable", manageState(t, page))
	require.Equal(t, "30", resp.Header.Get("Retry-After"))
	require.Contains(t, page, "Wait a minute, then try again")
	require.Contains(t, page, ">Try again</button>", "the page offers the retry")
	require.Contains(t, logs.String(), "Stripe unreachable")

	// Stripe no longer knows the order's customer (deleted in the
	// Dashboard): the stand-in's objects now name another.
	gone := s
	gone.Customer = fulfillertest.NewID("cus_")
	b.Stripe.PutSession(gone)
	b.Stripe.PutSubscription(stripefake.Subscription{ID: s.Subscription, Customer: gone.Customer,
		Items: []stripefake.SubscriptionItem{{PriceID: priceMonth, Quantity: 1}}})
	resp, page = b.postManage(t, action)
	require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	require.Equal(t, "refused", manageState(t, page))
	require.Contains(t, page, ref)
	require.Contains(t, logs.String(), "Stripe does not know the order's customer")

	// Four requests so far, and a burst of five per client: the sixth is
	// refused without asking Stripe.
	asked := len(b.Stripe.Requests())
	resp, _ = b.postManage(t, action)
	require.NotEqual(t, http.StatusTooManyRequests, resp.StatusCode)
	resp, page = b.postManage(t, action)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "busy", manageState(t, page))
	require.Equal(t, "10", resp.Header.Get("Retry-After"))
	require.Len(t, b.Stripe.Requests(), asked+1, "the refused request never reached Stripe")

	// The order cannot be read (its table gone for a moment): a page
	// saying to reload, not Stripe's.
	ctx := context.Background()
	_, err := b.Pool.Exec(ctx, `ALTER TABLE orders RENAME TO orders_hidden_by_test`)
	require.NoError(t, err)
	status, header, page := send(t, http.MethodGet, b.URL+action, "", nil)
	_, err = b.Pool.Exec(ctx, `ALTER TABLE orders_hidden_by_test RENAME TO orders`)
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.Equal(t, "order_unavailable", manageState(t, page))
	require.NotEmpty(t, header.Get("Retry-After"))

	out := logs.String()
	requireNoAccessInLogs(t, out, s.ID, b.Stripe.BillingPortalSessions())
	require.NotContains(t, out, "tab=billing", "nor the return URL")
	require.Contains(t, out, ref, "failures name the order by its reference")
}

// The keys email of a subscription links to its Manage subscription page
// (portal sessions expire, so the email holds none); from there the
// button opens the portal.
func TestKeysEmailOfASubscriptionLinksToItsManagePage(t *testing.T) {
	t.Parallel()
	b := setupMail(t, smtpPassword)
	s, _ := b.subscriptionOrder(t, 1)
	e := parseEmail(t, b.waitMessages(t, 1)[0].Data)
	link := regexp.MustCompile(regexp.QuoteMeta(publicBase) + `(/orders/ol_[A-Za-z0-9_-]+/manage-subscription)`).FindStringSubmatch(e.text)
	require.NotNil(t, link, "the text part links to the manage page: %s", e.text)
	require.Contains(t, e.html, `href="`+publicBase+link[1]+`"`)
	require.NotContains(t, e.text+e.html, "/_fake/portal/", "no portal session in an email")

	status, _, page := send(t, http.MethodGet, b.URL+link[1], "", nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "offer", manageState(t, page))
	form := regexp.MustCompile(`<form method="post" action="([^"]+)"><button type="submit">Manage subscription</button>`).FindStringSubmatch(page)
	require.NotNil(t, form, page)
	resp, _ := b.postManage(t, form[1])
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	sessions := b.Stripe.BillingPortalSessions()
	require.Len(t, sessions, 1)
	require.Equal(t, s.Customer, sessions[0].Customer)
	u, err := url.Parse(sessions[0].ReturnURL)
	require.NoError(t, err)
	require.Equal(t, publicBase, u.Scheme+"://"+u.Host, "with PUBLIC_BASE_URL set, the portal returns there")
}
