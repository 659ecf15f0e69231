package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/logging"
	"fulfiller/internal/mail"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi"
)

// Subscription self-service. The order page of a subscription shows
// "Manage subscription", a form that posts to
// /orders/{link}/manage-subscription; that route opens a session of
// Stripe's customer portal for the order's customer and answers 303 to it.
// The portal's URL lets whoever holds it manage the customer's billing for
// a few minutes: it goes to the buyer's browser in the Location header and
// nowhere else (no log, no page, no job). GET of the same route is a page
// with the button, what the keys email links to: portal sessions expire, so
// the email cannot carry one.

// BillingPortal opens Stripe customer portal sessions (stripeapi.Client).
type BillingPortal interface {
	CreateBillingPortalSession(ctx context.Context, customerID, returnURL string) (*stripe.BillingPortalSession, error)
}

// StripePortalOrigin is where Stripe serves the customer portal: the
// order pages' forms may be sent on there (Content-Security-Policy
// form-action), since the browser follows the 303 under the page's policy.
const StripePortalOrigin = "https://billing.stripe.com"

const (
	// Portal sessions per client: each costs a Stripe call. A buyer opens
	// the portal a few times at most; the burst covers a double click and
	// a retry.
	portalClientRate  = 0.1 // a token every 10 s
	portalClientBurst = 5
	portalRetryAfter  = "10"
	// Portal sessions of the process, so clients spread over many
	// addresses cannot spend the Stripe API's rate limit the webhooks'
	// jobs need.
	portalGlobalRate  = 5
	portalGlobalBurst = 20
	// portalTimeout bounds the Stripe call a buyer waits for.
	portalTimeout = 20 * time.Second
	// manageLinkTTL is how long the signed link in a page's Manage
	// subscription form, and in the portal's return URL, works: a page
	// left open for a day is reloaded before its form works again.
	manageLinkTTL = 24 * time.Hour
)

// Manage page states (data-state of its section).
const (
	manageOffer          = "offer"
	manageNoSubscription = "no_subscription"
	manageNoCustomer     = "no_customer"
	manageNotConfigured  = "not_configured"
	manageRefused        = "refused"
	manageUnavailable    = "unavailable" // Stripe unreachable
	manageOrderUnread    = "order_unavailable"
	manageBusy           = "busy"
	manageCrossSite      = "cross_site"
	manageNotFound       = "not_found"
)

// manageView is what subscription.html renders.
type manageView struct {
	State string
	Ref   string
	// ActionURL is where the page's button posts (a fresh signed link's
	// manage route); OrderURL the order page, by a fresh signed link.
	ActionURL, OrderURL string
}

// subscriptionManageable is whether an order has a subscription the
// customer portal can show: bought in subscription mode by a customer
// Stripe recorded.
func subscriptionManageable(o *order.Order) bool {
	return o.Mode == "subscription" && o.CustomerID != ""
}

// manageLinks are the order page and manage route of o by a fresh signed
// link: the page's form and the portal's return URL never carry the
// Checkout Session ID, which cannot expire and would sit in proxies' logs.
func (s *Server) manageLinks(r *http.Request, o *order.Order) (orderPath, managePath string, err error) {
	links, err := s.orderLinks(r)
	if err != nil {
		return "", "", err
	}
	orderPath = "/orders/" + url.PathEscape(links.Sign(o, time.Now().Add(manageLinkTTL)))
	return orderPath, orderPath + "/manage-subscription", nil
}

// portalReturnURL is where the portal sends the buyer back:
// BILLING_PORTAL_RETURN_URL, else the order page at PUBLIC_BASE_URL, else
// at the address the request came to (https unless it is this machine).
func (s *Server) portalReturnURL(r *http.Request, orderPath string) string {
	if s.PortalReturnURL != "" {
		return s.PortalReturnURL
	}
	if s.PublicBaseURL != "" {
		return s.PublicBaseURL + orderPath
	}
	scheme := "https"
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	if r.TLS == nil && mail.IsLoopback(strings.Trim(host, "[]")) {
		scheme = "http"
	}
	return scheme + "://" + r.Host + orderPath
}

// manageOrder reads the order a manage request names, as the order page
// does but without asking Stripe: only a recorded order has a subscription
// to manage. A nil order with a nil error is an order the credential does
// not open.
func (s *Server) manageOrder(r *http.Request) (*order.Order, error) {
	link, err := s.openLink(r, r.PathValue("checkout_session_id"))
	if err != nil || link.sessionID == "" {
		return nil, err
	}
	o, err := postgres.GetOrder(r.Context(), s.Pool, link.sessionID)
	if order.ErrorCode(err) == order.ENOTFOUND || (err == nil && !link.access.Grants(o)) {
		return nil, nil
	}
	return o, err
}

// manageSubscriptionPage serves GET /orders/{id}/manage-subscription: the
// button that opens the portal, or why there is none. It asks nothing of
// Stripe.
func (s *Server) manageSubscriptionPage(w http.ResponseWriter, r *http.Request) {
	o, view, status := s.manageable(w, r)
	if o != nil {
		view.State = manageOffer
	}
	s.renderManage(w, r, status, view)
}

// manageable reads the order of a manage request and tells what the page
// says when it cannot be managed; a non-nil order can be.
func (s *Server) manageable(w http.ResponseWriter, r *http.Request) (*order.Order, manageView, int) {
	o, err := s.manageOrder(r)
	switch {
	case err != nil:
		s.logPageError(r, err)
		w.Header().Set("Retry-After", retryAfterUnavailable)
		return nil, manageView{State: manageOrderUnread}, http.StatusServiceUnavailable
	case o == nil:
		return nil, manageView{State: manageNotFound}, http.StatusNotFound
	}
	view := manageView{Ref: logging.OrderRef(o.CheckoutSessionID)}
	orderPath, managePath, err := s.manageLinks(r, o)
	if err != nil {
		s.logPageError(r, err)
		w.Header().Set("Retry-After", retryAfterUnavailable)
		return nil, manageView{State: manageOrderUnread, Ref: view.Ref}, http.StatusServiceUnavailable
	}
	view.OrderURL, view.ActionURL = orderPath, managePath
	switch {
	case o.Mode != "subscription":
		view.State, view.ActionURL = manageNoSubscription, ""
		return nil, view, http.StatusConflict
	case !subscriptionManageable(o):
		view.State, view.ActionURL = manageNoCustomer, ""
		return nil, view, http.StatusConflict
	}
	return o, view, http.StatusOK
}

// manageSubscription serves POST /orders/{id}/manage-subscription: a
// customer portal session for the order's customer, answered 303 to its
// URL. The request must come from the shop's own pages (a form on another
// site is refused), and costs the client a token whatever its answer.
func (s *Server) manageSubscription(w http.ResponseWriter, r *http.Request) {
	if err := s.portalCrossOrigin.Check(r); err != nil {
		s.logAuthFailure(r.Context(), r, "cross-site request to manage a subscription refused")
		s.renderManage(w, r, http.StatusForbidden, manageView{State: manageCrossSite})
		return
	}
	if !s.portalClients.allow(s.clientIP(r)) || !s.portalAll.allow() {
		w.Header().Set("Retry-After", portalRetryAfter)
		s.renderManage(w, r, http.StatusTooManyRequests, manageView{State: manageBusy})
		return
	}
	o, view, status := s.manageable(w, r)
	if o == nil {
		s.renderManage(w, r, status, view)
		return
	}
	if s.BillingPortal == nil {
		s.portalLog.ErrorContext(r.Context(), "subscription management asked for, but this server has no Stripe client for the customer portal",
			"order_ref", view.Ref)
		view.State, view.ActionURL = manageNotConfigured, ""
		s.renderManage(w, r, http.StatusServiceUnavailable, view)
		return
	}
	returnURL := s.portalReturnURL(r, view.OrderURL)
	ctx, cancel := context.WithTimeout(r.Context(), portalTimeout)
	defer cancel()
	session, err := s.BillingPortal.CreateBillingPortalSession(ctx, o.CustomerID, returnURL)
	if err == nil && session.URL == "" {
		err = errors.New("stripe answered a customer portal session without a url")
	}
	if err != nil {
		if r.Context().Err() != nil {
			return // the buyer went away
		}
		var status int
		view.State, status = s.portalFailed(r, view.Ref, err, returnURL)
		if view.State == manageUnavailable {
			w.Header().Set("Retry-After", "30")
		} else {
			view.ActionURL = "" // trying again changes nothing
		}
		s.renderManage(w, r, status, view)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Location", session.URL)
	w.WriteHeader(http.StatusSeeOther)
}

// portalFailed logs why Stripe opened no portal session, in words for the
// operator (never the return URL, which holds a signed link), and returns
// what the buyer's page says and its status: the shop's portal not set up
// (no configuration, or a key not allowed to open sessions), Stripe
// unreachable (503, the buyer may retry), or refused (502).
func (s *Server) portalFailed(r *http.Request, ref string, err error, returnURL string) (string, int) {
	msg := strings.ReplaceAll(err.Error(), returnURL, "<return_url>")
	ctx := r.Context()
	switch {
	case stripeapi.IsPortalNotConfigured(err):
		s.portalLog.ErrorContext(ctx, "buyers cannot manage their subscriptions: Stripe has no customer portal configuration in this mode; "+
			"save the portal settings in the Stripe Dashboard (Settings, Billing, Customer portal)", "order_ref", ref, "error", msg)
		return manageNotConfigured, http.StatusServiceUnavailable
	case stripeapi.IsUnauthorized(err):
		s.portalLog.ErrorContext(ctx, "buyers cannot manage their subscriptions: Stripe refused STRIPE_API_KEY for customer portal sessions; "+
			"a restricted key needs write access to the customer portal", "order_ref", ref, "error", msg)
		return manageNotConfigured, http.StatusServiceUnavailable
	case stripeapi.IsUnknownCustomer(err):
		s.portalLog.ErrorContext(ctx, "Stripe does not know the order's customer, so its subscription cannot be managed; "+
			"check the customer in the Stripe Dashboard (deleted, or of another account or mode)", "order_ref", ref, "error", msg)
		return manageRefused, http.StatusBadGateway
	case stripeapi.IsRetryable(err) || errors.Is(err, context.DeadlineExceeded):
		s.portalLog.WarnContext(ctx, "could not open a customer portal session: Stripe unreachable; the buyer is asked to retry",
			"order_ref", ref, "error", msg)
		return manageUnavailable, http.StatusServiceUnavailable
	default:
		s.portalLog.ErrorContext(ctx, "Stripe refused to open a customer portal session", "order_ref", ref, "error", msg)
		return manageRefused, http.StatusBadGateway
	}
}

func (s *Server) renderManage(w http.ResponseWriter, r *http.Request, status int, view manageView) {
	s.renderPage(w, r, status, "subscription.html", pageData{Title: "Your subscription", Manage: &view, FindKeys: s.Mail != nil})
}

// newPortalLogger samples the portal's failure lines per message: Stripe
// down or the portal unconfigured fails every buyer alike, and one line
// every few seconds says so.
func newPortalLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return logging.SampleByMessage(l, 10*time.Second)
}

// portalFormAction is the pages' Content-Security-Policy form-action: the
// service itself and the customer portal the manage form is redirected
// to.
func (s *Server) portalFormAction() string {
	if s.PortalOrigin == "" {
		return "'self'"
	}
	return "'self' " + s.PortalOrigin
}
