package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"time"

	"fulfiller/internal/discord"
	"fulfiller/internal/jobs"
	"fulfiller/internal/logging"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// The order page's verified Discord link: "Link Discord" opens
// GET /orders/{link}/discord (a signed order link only, never a Checkout
// Session ID: the address goes through Discord and the browser's history),
// which begins a sign-in bound to the order and the browser (see
// internal/discord's Flows) and sends the buyer to Discord. Discord sends
// them back to GET /discord/callback, which checks the sign-in, exchanges
// the code (with the PKCE verifier), reads the account and, in one
// transaction, records it and queues the writers of the order's keys; then
// it sends the buyer back to the order page, which shows the account.
// Every failure is a page that says what failed and what to do, and
// changes nothing. The code, the token and the state are never logged.

// Per client, beginning a sign-in costs a token: 10 in a burst, one more
// every 6 s. Each begins a Discord page view, nothing more; the bound
// keeps the service from being a redirector anyone can spin.
const (
	discordStartRate  = 1.0 / 6
	discordStartBurst = 10
	// discordLinkTTL is how long the order links the flow hands back
	// work: find my keys' 30 minutes.
	discordLinkTTL = jobs.OrderLookupLinkTTL
)

// discordFlows holds the sealer of sign-ins once its key is read.
type discordFlows struct {
	mu    sync.Mutex
	flows *discord.Flows
}

func (s *Server) flows(r *http.Request) (*discord.Flows, error) {
	s.discordFlows.mu.Lock()
	defer s.discordFlows.mu.Unlock()
	if s.discordFlows.flows == nil {
		secret, err := postgres.KeyLookupSigningKey(r.Context(), s.Pool)
		if err != nil {
			return nil, err
		}
		s.discordFlows.flows = discord.NewFlows(secret)
	}
	return s.discordFlows.flows, nil
}

// Outcomes of a sign-in, each a page (data-outcome) and a status.
const (
	discordExpired       = "expired"
	discordMismatch      = "mismatch"
	discordDenied        = "denied"
	discordRefused       = "discord_error"
	discordReplayed      = "replayed"
	discordCodeRefused   = "code_refused"
	discordUnavailable   = "unavailable"
	discordMisconfigured = "misconfigured"
	discordOrderGone     = "order_gone"
	discordNotUsable     = "not_usable"
	discordBusy          = "busy"
	discordServiceDown   = "service_unavailable"
	discordConfirm       = "confirm"
)

// discordPage is what the outcome page renders.
type discordPage struct {
	Outcome string
	Heading string
	Message string
	// Back opens the order again; Retry begins a new sign-in. Empty when
	// the order cannot be named (no sign-in in this browser) or opened.
	Back, Retry string
	// Continue begins the sign-in a page of another site asked for, once
	// the buyer confirms it.
	Continue string
}

var discordOutcomes = map[string]struct {
	status           int
	heading, message string
}{
	discordExpired: {http.StatusBadRequest, "This Discord sign-in has expired",
		"It took longer than 10 minutes, or it was started in another browser, or it was finished already. Nothing was changed. Open your order page again (the link in your keys email, or find your keys with your email address) and press Link Discord."},
	discordMismatch: {http.StatusBadRequest, "This Discord sign-in does not match",
		"Discord came back with a sign-in this browser did not start, or one replaced by a newer one (started in another tab). Nothing was changed. Press Link Discord again on your order page."},
	discordDenied: {http.StatusOK, "Discord sign-in cancelled",
		"You did not allow the shop to see your Discord account, so nothing was linked. Nothing was changed: your keys work as before."},
	discordRefused: {http.StatusBadGateway, "Discord refused the sign-in",
		"Discord did not sign you in. Nothing was changed. Try again; if it keeps failing, contact the shop and quote your order reference."},
	discordReplayed: {http.StatusConflict, "This Discord sign-in was used already",
		"Each sign-in links once; repeating it changes nothing. Your order page shows the Discord account linked to your keys."},
	discordCodeRefused: {http.StatusBadRequest, "Discord did not accept the sign-in",
		"The sign-in code was used already or has expired. Nothing was changed. Press Link Discord again."},
	discordUnavailable: {http.StatusServiceUnavailable, "Discord did not answer",
		"Discord did not answer in time. Nothing was changed. Try again in a minute."},
	discordMisconfigured: {http.StatusInternalServerError, "Discord linking is not working right now",
		"The shop's Discord settings were refused by Discord, so no account can be linked until the shop fixes them. Nothing was changed; your keys work as before. Contact the shop."},
	discordOrderGone: {http.StatusNotFound, "This order link no longer works",
		"The shop replaced the links to this order, so this sign-in cannot link anything. Nothing was changed. Use the newest link the shop emailed you, or find your keys with your email address."},
	discordNotUsable: {http.StatusConflict, "There is nothing to link",
		"This order's keys were revoked or never delivered, so no Discord account can be linked to them. Nothing was changed. Contact the shop if you think this is a mistake."},
	discordBusy: {http.StatusTooManyRequests, "Too many sign-ins",
		"Too many Discord sign-ins were started from your network. Wait a minute, then press Link Discord again."},
	discordServiceDown: {http.StatusServiceUnavailable, "Temporarily unavailable",
		"The shop's service cannot record the link right now. Nothing was changed. Try again in a minute."},
	discordConfirm: {http.StatusOK, "Link your Discord account to this order?",
		"Another site sent you here to link a Discord account to this order's keys. Continue only if you pressed Link Discord on your order page yourself: the account you sign in with will be linked to these keys."},
}

// discordOff answers the Discord routes while DISCORD_* is unset: they do
// not exist.
func (s *Server) discordOff(w http.ResponseWriter, r *http.Request) bool {
	if s.Discord != nil {
		return false
	}
	s.renderPage(w, r, http.StatusNotFound, "not-found.html", pageData{Title: "Page not found"})
	return true
}

// discordStart begins a sign-in: GET /orders/{link}/discord.
func (s *Server) discordStart(w http.ResponseWriter, r *http.Request) {
	if s.discordOff(w, r) {
		return
	}
	raw := r.PathValue("checkout_session_id")
	if !jobs.IsOrderLink(raw) {
		s.renderPage(w, r, http.StatusNotFound, "not-found.html", pageData{Title: "Page not found"})
		return
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		// Begun by a page of another site: the sign-in would link
		// whichever account this browser signs in with to an order its
		// visitor never opened. The buyer confirms it here first.
		s.renderPage(w, r, discordOutcomes[discordConfirm].status, "discord.html", pageData{Title: discordOutcomes[discordConfirm].heading,
			Discord: &discordPage{Outcome: discordConfirm, Heading: discordOutcomes[discordConfirm].heading,
				Message: discordOutcomes[discordConfirm].message, Continue: "/orders/" + raw + "/discord", Back: "/orders/" + raw}})
		return
	}
	if !s.discordClients.allow(s.clientIP(r)) {
		w.Header().Set("Retry-After", "6")
		s.discordOutcome(w, r, discordBusy, "", "")
		return
	}
	link, err := s.openLink(r, raw)
	var o *order.Order
	if err == nil && link.sessionID != "" {
		o, err = postgres.GetOrder(r.Context(), s.Pool, link.sessionID)
	}
	switch {
	case err != nil && order.ErrorCode(err) != order.ENOTFOUND:
		s.logDiscordFailure(r, err)
		s.discordOutcome(w, r, discordServiceDown, "", "")
		return
	case err != nil || o == nil || !link.access.Grants(o):
		s.renderPage(w, r, http.StatusNotFound, "not-found.html", pageData{Title: "Page not found"})
		return
	case o.Status == order.StatusRevoked || o.Status == order.StatusFailed:
		s.discordOutcome(w, r, discordNotUsable, "/orders/"+raw, "")
		return
	}
	flows, err := s.flows(r)
	if err != nil {
		s.logDiscordFailure(r, err)
		s.discordOutcome(w, r, discordServiceDown, "", "")
		return
	}
	flow := discord.Begin(o.ID, o.AccessGeneration, time.Now())
	cookie, state, _ := flows.Seal(flow) // Begin makes a well-formed flow
	// Secure whatever the scheme: the callback is https, or on this
	// machine (DISCORD_REDIRECT_URL allows plain http nowhere else), which
	// browsers count as secure.
	http.SetCookie(w, &http.Cookie{
		Name: discord.CookieName, Value: cookie, Path: discord.CallbackPath,
		MaxAge: int(discord.FlowTTL.Seconds()), HttpOnly: true, Secure: true,
		SameSite: http.SameSiteLaxMode,
	})
	setPageHeaders(w)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, s.Discord.AuthCodeURL(state, flow.Verifier), http.StatusFound)
}

// oauthErrorCode is what of Discord's error parameter a page repeats.
var oauthErrorCode = regexp.MustCompile(`^[a-z_]{1,40}$`)

// discordCallback finishes a sign-in: GET /discord/callback.
func (s *Server) discordCallback(w http.ResponseWriter, r *http.Request) {
	if s.discordOff(w, r) {
		return
	}
	// Whatever follows, this browser's sign-in is over.
	http.SetCookie(w, &http.Cookie{Name: discord.CookieName, Value: "", Path: discord.CallbackPath, MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	flows, err := s.flows(r)
	if err != nil {
		s.logDiscordFailure(r, err)
		s.discordOutcome(w, r, discordServiceDown, "", "")
		return
	}
	c, err := r.Cookie(discord.CookieName)
	if err != nil {
		s.discordOutcome(w, r, discordExpired, "", "")
		return
	}
	flow, err := flows.Open(c.Value, time.Now())
	if err != nil {
		s.discordOutcome(w, r, discordExpired, "", "")
		return
	}
	q := r.URL.Query()
	if !flows.StateMatches(flow, q.Get("state")) {
		back, retry := s.discordLinks(r, flow)
		s.discordOutcome(w, r, discordMismatch, back, retry)
		return
	}
	if e := q.Get("error"); e != "" {
		back, retry := s.discordLinks(r, flow)
		if e == "access_denied" {
			s.discordOutcome(w, r, discordDenied, back, retry)
			return
		}
		if !oauthErrorCode.MatchString(e) {
			e = "unreadable"
		}
		s.Logger.WarnContext(r.Context(), "discord refused a sign-in", "route", routeOf(r), "oauth_error", e)
		s.discordOutcome(w, r, discordRefused, back, retry)
		return
	}
	code := q.Get("code")
	if code == "" || len(code) > 512 {
		back, retry := s.discordLinks(r, flow)
		s.discordOutcome(w, r, discordRefused, back, retry)
		return
	}
	fresh, err := postgres.UseDiscordState(r.Context(), s.Pool, flow.Nonce)
	if err != nil {
		s.logDiscordFailure(r, err)
		s.discordOutcome(w, r, discordServiceDown, "", "")
		return
	}
	if !fresh {
		back, _ := s.discordLinks(r, flow)
		s.discordOutcome(w, r, discordReplayed, back, "")
		return
	}
	access := order.Access{OrderID: flow.OrderID, Generation: flow.Generation}
	back, retry := s.discordLinks(r, flow)
	if back == "" {
		// The order is gone or its access rotated since the sign-in began:
		// Discord is not asked for an account nothing will be linked to.
		s.discordOutcome(w, r, discordOrderGone, "", "")
		return
	}
	user, err := s.Discord.Identify(r.Context(), code, flow.Verifier)
	if err != nil {
		outcome := discordRefused
		level := slog.LevelWarn
		switch {
		case errors.Is(err, discord.ErrCodeRefused):
			outcome, level = discordCodeRefused, slog.LevelInfo
		case errors.Is(err, discord.ErrUnavailable):
			outcome = discordUnavailable
			w.Header().Set("Retry-After", "60")
		case errors.Is(err, discord.ErrClientRefused):
			outcome, level = discordMisconfigured, slog.LevelError
		}
		s.Logger.Log(r.Context(), level, "a Discord sign-in failed; nothing was linked", "route", routeOf(r), "error", err.Error())
		s.discordOutcome(w, r, outcome, back, retry)
		return
	}
	o, err := s.Orders.VerifiedDiscord(r.Context(), access, user.ID, user.Username)
	switch {
	case order.ErrorCode(err) == order.ENOTFOUND:
		s.discordOutcome(w, r, discordOrderGone, "", "")
		return
	case order.ErrorCode(err) == order.ECONFLICT:
		s.discordOutcome(w, r, discordNotUsable, back, "")
		return
	case err != nil:
		s.logDiscordFailure(r, err)
		s.discordOutcome(w, r, discordServiceDown, back, retry)
		return
	}
	links, err := s.orderLinks(r)
	if err != nil {
		s.logDiscordFailure(r, err)
		s.discordOutcome(w, r, discordServiceDown, back, "")
		return
	}
	setPageHeaders(w)
	w.Header().Set("Cache-Control", "no-store")
	// Back to the order, so the address bar no longer holds the code.
	http.Redirect(w, r, "/orders/"+links.Sign(o, time.Now().Add(discordLinkTTL))+"#discord-"+logging.OrderRef(o.CheckoutSessionID),
		http.StatusSeeOther)
}

// discordLinks are the order page and a new sign-in of the flow's order,
// with a fresh signed link, when the flow's access still opens it; empty
// when it does not, or it cannot be read.
func (s *Server) discordLinks(r *http.Request, flow discord.Flow) (back, retry string) {
	sessionID, err := postgres.SessionIDOfOrder(r.Context(), s.Pool, flow.OrderID)
	if err != nil {
		return "", ""
	}
	o, err := postgres.GetOrder(r.Context(), s.Pool, sessionID)
	if err != nil || !(order.Access{OrderID: flow.OrderID, Generation: flow.Generation}).Grants(o) {
		return "", ""
	}
	links, err := s.orderLinks(r)
	if err != nil {
		return "", ""
	}
	link := links.Sign(o, time.Now().Add(discordLinkTTL))
	return "/orders/" + link, "/orders/" + link + "/discord"
}

// discordOutcome renders the page of a sign-in's outcome.
func (s *Server) discordOutcome(w http.ResponseWriter, r *http.Request, outcome, back, retry string) {
	o := discordOutcomes[outcome]
	s.renderPage(w, r, o.status, "discord.html", pageData{Title: o.heading,
		Discord: &discordPage{Outcome: outcome, Heading: o.heading, Message: o.message, Back: back, Retry: retry}})
}

// logDiscordFailure logs a failure of this service (its database) during
// a sign-in as the order page does.
func (s *Server) logDiscordFailure(r *http.Request, err error) {
	s.logPageError(r, err)
}
