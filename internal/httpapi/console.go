package httpapi

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"fulfiller/internal/jobs"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// The operator console: pages on the internal listener, behind the admin
// login (HTTP basic auth, as the River UI), that answer "did this buyer get
// their keys, and if not why" and carry out support actions through
// jobs.Support, the implementation the admin API and the CLI call. Every
// action needs a confirmation and a reason, which the audit log keeps.
// Searches go in POST bodies (email addresses and keys stay out of URLs);
// orders are addressed by their ord_ reference, never their Checkout
// Session ID, and keys are shown by their last characters only.

// ConsolePrefix is where the console is served on the internal listener.
const ConsolePrefix = "/console/"

//go:embed web/console/*.html web/console/assets/*
var consoleFS embed.FS

var (
	consoleAssets    = loadConsoleAssets()
	consoleTemplates = template.Must(template.New("").Funcs(template.FuncMap{
		"consoleAsset": func(name string) string {
			return ConsolePrefix + "assets/" + name + "?v=" + consoleAssets[name].etag[1:9]
		},
		"when":       func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"iso":        func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"orDash":     orDash,
		"formatRate": formatRate,
		// dict passes named values to a template: dict "Name" value ...
		"dict": func(pairs ...any) map[string]any {
			m := make(map[string]any, len(pairs)/2)
			for i := 0; i+1 < len(pairs); i += 2 {
				m[pairs[i].(string)] = pairs[i+1]
			}
			return m
		},
	}).ParseFS(consoleFS, "web/console/*.html"))
)

func loadConsoleAssets() map[string]asset {
	out := map[string]asset{}
	entries, err := fs.ReadDir(consoleFS, "web/console/assets")
	if err != nil {
		panic(err) // embedded at build time: cannot fail at run time
	}
	for _, e := range entries {
		body, err := consoleFS.ReadFile("web/console/assets/" + e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(body)
		out[e.Name()] = asset{name: e.Name(), body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return out
}

// consoleCSP allows the console's own script and style sheet and nothing
// else: no inline code, forms posted to the console only.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// consoleRoutes are the console's entries of the internal listener's
// route table.
func (s *Server) consoleRoutes() []route {
	return []route{
		{"GET /console/{$}", s.consolePage(s.consoleOverview)},
		{"GET /console/orders", s.consolePage(s.consoleOrders)},
		{"POST /console/orders", s.consolePage(s.consoleSearch)},
		{"GET /console/orders/{ref}", s.consolePage(s.consoleOrder)},
		{"POST /console/orders/{ref}/actions/{action}", s.consolePage(s.consoleOrderAction)},
		{"POST /console/orders/{ref}/keys/{key_id}/actions", s.consolePage(s.consoleKeyAction)},
		{"POST /console/checks", s.consolePage(s.consoleRunChecks)},
		{"GET /console/stock", s.consolePage(s.consoleStock)},
		{"POST /console/stock/actions/{action}", s.consolePage(s.consoleStockAction)},
		{"GET /console/deliveries", s.consolePage(s.consoleDeliveries)},
		{"GET /console/deliveries/{id}", s.consolePage(s.consoleDelivery)},
		{"POST /console/deliveries/{id}/replay", s.consolePage(s.consoleReplayDelivery)},
		{"GET /console/assets/{name}", s.consolePage(serveConsoleAsset)},
	}
}

// consolePage wraps a console route: the admin login required (the
// admin API's token is not a browser's), the console's CSP, nothing cached
// nor sniffed. Cross-site requests are refused for the whole internal
// listener (AdminHandler).
func (s *Server) consolePage(next http.HandlerFunc) http.Handler {
	return s.requireAdmin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", consoleCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next(w, r)
	}), true)
}

func serveConsoleAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := consoleAssets[r.PathValue("name")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", a.etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}

// consoleData is what every console page renders.
type consoleData struct {
	Title string
	// Section is the navigation's current entry: "overview", "orders",
	// "stock" or "deliveries".
	Section string
	Actor   string
	// Notice is the outcome of the action just taken; Problem what went
	// wrong with the request.
	Notice, Problem string

	Search   string
	Searched bool
	Results  []consoleOrderRow

	Order    *consoleOrder
	Overview *consoleOverview
	Stock    *consoleStockPage

	Deliveries *consoleDeliveriesPage
	Delivery   *consoleDeliveryPage
}

func (s *Server) renderConsole(w http.ResponseWriter, r *http.Request, status int, name string, d consoleData) {
	d.Actor = adminActor(r)
	var buf bytes.Buffer
	if err := consoleTemplates.ExecuteTemplate(&buf, name, d); err != nil {
		s.Logger.ErrorContext(r.Context(), "rendering a console page failed", "page", name, "error", err)
		http.Error(w, "500 the console page could not be rendered; the service's log says why", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// consoleProblem renders page with what went wrong and its HTTP status;
// an internal error is logged, and worded without its detail.
func (s *Server) consoleProblem(w http.ResponseWriter, r *http.Request, name string, d consoleData, err error) {
	status, message := s.consoleError(r, err)
	d.Problem = message
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", retryAfterUnavailable)
	}
	s.renderConsole(w, r, status, name, d)
}

// consoleError is err's HTTP status and what the operator is told of it.
func (s *Server) consoleError(r *http.Request, err error) (int, string) {
	code := order.ErrorCode(err)
	if code == order.EINTERNAL && postgres.IsUnavailable(err) {
		return http.StatusServiceUnavailable, "The database is unreachable; try again in a few seconds."
	}
	status, ok := statusOf[code]
	if !ok || code == order.EINTERNAL {
		s.Logger.ErrorContext(r.Context(), "console request failed", "route", routeOf(r), "error", err.Error())
		return http.StatusInternalServerError, "The request failed; the service's log says why. Try again in a moment."
	}
	return status, order.ErrorMessage(err)
}

func (s *Server) consoleOverview(w http.ResponseWriter, r *http.Request) {
	d := consoleData{Title: "Overview", Section: "overview", Notice: consoleOverviewNotices[r.URL.Query().Get("done")]}
	v, err := s.Support.Overview(r.Context(), time.Now().UTC())
	if err != nil {
		s.consoleProblem(w, r, "console-overview.html", d, err)
		return
	}
	d.Overview = renderConsoleOverview(v)
	d.Overview.Budget = renderBudgetChart(v.LuarmorCalls, budgetPerMinute(s.LuarmorRateLimit, s.LuarmorRateWindow))
	if s.Stock != nil {
		levels, err := s.Stock.Levels(r.Context())
		if err != nil {
			s.consoleProblem(w, r, "console-overview.html", d, err)
			return
		}
		d.Overview.Stock = renderConsoleStock(levels)
	}
	d.Overview.Checks = s.renderConsoleChecks()
	d.Overview.CredentialsChecked = s.Credentials != nil
	if s.Credentials != nil {
		d.Overview.CredentialProblems = s.Credentials.Problems()
	}
	s.renderConsole(w, r, http.StatusOK, "console-overview.html", d)
}

func (s *Server) consoleOrders(w http.ResponseWriter, r *http.Request) {
	s.renderConsole(w, r, http.StatusOK, "console-orders.html", consoleData{Title: "Orders", Section: "orders"})
}

// maxConsoleForm bounds a console form's body: a search or a reason.
const maxConsoleForm = 4 << 10

func parseConsoleForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxConsoleForm)
	if err := r.ParseForm(); err != nil {
		return order.Errorf(order.EINVALID, "the form could not be read: it is at most 4 KiB")
	}
	return nil
}

// consoleSearch answers the search form: its text in the body, so an
// email address or a key never reaches a URL.
func (s *Server) consoleSearch(w http.ResponseWriter, r *http.Request) {
	d := consoleData{Title: "Orders", Section: "orders"}
	if err := parseConsoleForm(w, r); err != nil {
		s.consoleProblem(w, r, "console-orders.html", d, err)
		return
	}
	text := strings.TrimSpace(r.PostForm.Get("q"))
	if echoableSearch(text) {
		d.Search = text
	}
	orders, err := s.Support.SearchOrders(r.Context(), text)
	if err != nil {
		s.consoleProblem(w, r, "console-orders.html", d, err)
		return
	}
	d.Searched, d.Title = true, "Orders found"
	now := time.Now()
	for _, o := range orders {
		d.Results = append(d.Results, renderConsoleRow(o, now))
	}
	s.renderConsole(w, r, http.StatusOK, "console-orders.html", d)
}

// echoableSearch says a search's text may be shown again in the search
// box: an email address, an order reference, a customer or a Discord ID,
// never a Checkout Session ID or (part of) a key.
func echoableSearch(text string) bool {
	return strings.Contains(text, "@") || strings.HasPrefix(text, "ord_") || strings.HasPrefix(text, "cus_") ||
		jobs.DiscordIDPattern.MatchString(text)
}

// consoleDetails reads the order of the URL's reference, which must be an
// ord_ reference: a Checkout Session ID opens the order to anyone, and
// stays out of the console's URLs.
func (s *Server) consoleDetails(r *http.Request) (*jobs.OrderDetails, *jobs.OrderActivity, error) {
	ref := r.PathValue("ref")
	if !strings.HasPrefix(ref, "ord_") {
		return nil, nil, order.Errorf(order.ENOTFOUND, "the console names orders by their ord_ reference; search for a Checkout Session ID instead")
	}
	d, err := s.Support.Order(r.Context(), ref)
	if err != nil {
		return nil, nil, err
	}
	a, err := s.Support.Activity(r.Context(), d)
	if err != nil {
		return nil, nil, err
	}
	return d, a, nil
}

func (s *Server) consoleOrder(w http.ResponseWriter, r *http.Request) {
	s.showConsoleOrder(w, r, http.StatusOK, consoleData{Notice: consoleNotices[r.URL.Query().Get("done")]})
}

// showConsoleOrder renders the order page, with d's notice or problem.
func (s *Server) showConsoleOrder(w http.ResponseWriter, r *http.Request, status int, d consoleData) {
	d.Section, d.Title = "orders", "Order "+r.PathValue("ref")
	details, activity, err := s.consoleDetails(r)
	if err != nil {
		s.consoleProblem(w, r, "console-order.html", d, err)
		return
	}
	d.Order = s.renderConsoleOrder(details, activity, time.Now())
	d.Title = "Order " + d.Order.Ref
	s.renderConsole(w, r, status, "console-order.html", d)
}

// consoleNotices word the outcome of each action after its redirect; the
// URL names the action only.
var consoleNotices = map[string]string{
	"retry":                         "The order's fulfilment is queued again; the timeline shows its job.",
	"resend-email":                  "A new keys email is queued.",
	"rotate-link":                   "The order's Checkout Session ID and every earlier link no longer open it; the buyer is emailed a fresh link if mail is on.",
	jobs.ActionLiftRevocation:       "The revocation is lifted; restoring the order and unbanning its keys is queued.",
	string(jobs.ActionReissueKey):   "The reissue is queued: a new key is made, then the old one revoked.",
	string(jobs.ActionRevokeKey):    "The key's revocation is queued.",
	string(jobs.ActionBlacklistKey): "The key's blacklisting is queued.",
	string(jobs.ActionUnbanKey):     "The key's unban is queued.",
	string(jobs.ActionResetHWID):    "The key's HWID reset is queued.",
	string(jobs.ActionSetDiscord):   "Setting the key's Discord ID is queued.",
}

// confirmedReason reads an action's form: its confirmation ticked and its
// reason given, or an EINVALID naming what is missing.
func confirmedReason(w http.ResponseWriter, r *http.Request) (string, error) {
	if err := parseConsoleForm(w, r); err != nil {
		return "", err
	}
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	switch {
	case r.PostForm.Get("confirm") != "yes":
		return "", order.Errorf(order.EINVALID, "nothing was done: tick the confirmation to carry out the action")
	case reason == "":
		return "", order.Errorf(order.EINVALID, "nothing was done: give a reason, which the audit log keeps")
	}
	return reason, nil
}

// consoleOrderAction carries out an action on the whole order.
func (s *Server) consoleOrderAction(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	reason, err := confirmedReason(w, r)
	if err == nil {
		err = s.orderAction(r, action, reason)
	}
	s.consoleActionDone(w, r, action, err)
}

func (s *Server) orderAction(r *http.Request, action, reason string) error {
	ctx, actor, ref := r.Context(), adminActor(r), r.PathValue("ref")
	if !strings.HasPrefix(ref, "ord_") {
		return order.Errorf(order.ENOTFOUND, "the console names orders by their ord_ reference")
	}
	switch action {
	case "retry":
		_, err := s.Support.Retry(ctx, actor, ref, reason)
		return err
	case "resend-email":
		if s.Mail == nil {
			return order.Errorf(order.ECONFLICT, "keys by email is off: set SMTP_URL, MAIL_FROM and PUBLIC_BASE_URL")
		}
		_, err := s.Support.ResendEmail(ctx, s.Mail, actor, ref, reason)
		if errors.Is(err, jobs.ErrOrderNotFulfilled) {
			return order.Errorf(order.ECONFLICT, "%s", err.Error())
		}
		return err
	case "rotate-link":
		_, err := s.Support.RotateOrderAccess(ctx, actor, ref, reason)
		return err
	case jobs.ActionLiftRevocation:
		_, err := s.Support.LiftRevocation(ctx, actor, ref, r.PostForm.Get("source_id"), reason)
		return err
	}
	return order.Errorf(order.ENOTFOUND, "no order action %q: retry, resend-email, rotate-link or lift-revocation", action)
}

// consoleKeyAction carries out an action on one key of the order, named
// by its unit's ID: the key itself never travels through the browser.
func (s *Server) consoleKeyAction(w http.ResponseWriter, r *http.Request) {
	reason, err := confirmedReason(w, r)
	action := r.PostForm.Get("action")
	if err == nil {
		err = s.keyAction(r, jobs.KeyAction(action), reason)
	}
	s.consoleActionDone(w, r, action, err)
}

func (s *Server) keyAction(r *http.Request, action jobs.KeyAction, reason string) error {
	keyID, err := strconv.ParseInt(r.PathValue("key_id"), 10, 64)
	if err != nil {
		return order.Errorf(order.ENOTFOUND, "no such key of this order")
	}
	details, _, err := s.consoleDetails(r)
	if err != nil {
		return err
	}
	for _, k := range details.Order.Keys {
		if k.ID != keyID {
			continue
		}
		if k.UserKey == "" {
			return order.Errorf(order.ECONFLICT, "this unit has no key yet: retry the order instead")
		}
		_, err := s.Support.KeyAction(r.Context(), adminActor(r), jobs.KeyRequest{Action: action, UserKey: k.UserKey,
			Reason: reason, DiscordID: strings.TrimSpace(r.PostForm.Get("discord_id"))})
		return err
	}
	return order.Errorf(order.ENOTFOUND, "no such key of this order")
}

// consoleActionDone sends the operator back to the order page: a redirect
// naming the action when it was taken, else the page with why not.
func (s *Server) consoleActionDone(w http.ResponseWriter, r *http.Request, action string, err error) {
	if err != nil {
		status, message := s.consoleError(r, err)
		s.showConsoleOrder(w, r, status, consoleData{Problem: "Nothing was done: " + strings.TrimPrefix(message, "nothing was done: ")})
		return
	}
	target := ConsolePrefix + "orders/" + url.PathEscape(r.PathValue("ref")) + "?done=" + url.QueryEscape(action)
	http.Redirect(w, r, target, http.StatusSeeOther)
}
