package httpapi

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"fulfiller/internal/jobs"
	"fulfiller/internal/logging"
	"fulfiller/internal/mail"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/shop"
)

// The buyer's pages: the hosted order page (a shop's Checkout success_url)
// and find-my-keys. Go templates render every order state; the page's
// script only fetches that HTML again when the order API reports a change,
// so an order is rendered in one place.

//go:embed web/*.html web/assets/*
var webFS embed.FS

// pageSecurityHeaders are set on every page and asset: scripts and styles
// from this origin only (none inline), no framing, no Referer carrying the
// Checkout Session ID of the page's URL to anyone.
var pageSecurityHeaders = map[string]string{
	"Content-Security-Policy": pageCSP("'self'"),
	"Referrer-Policy":         "no-referrer",
	"X-Content-Type-Options":  "nosniff",
}

// asset is one embedded file of /assets/, with its content-hash ETag.
type asset struct {
	name string
	body []byte
	etag string
}

var (
	assets    = loadAssets()
	templates = template.Must(template.New("").Funcs(template.FuncMap{
		"asset":    func(name string) string { return "/assets/" + name + "?v=" + assets[name].etag[1:9] },
		"add":      func(a, b int) int { return a + b },
		"iso":      isoTime,
		"utc":      formatTime,
		"keyError": func(o *orderView, text string) keyError { return keyError{Order: o, Text: text} },
		"keyItem": func(o *orderView, index int, k keyView) keyItem {
			return keyItem{Order: o, Index: index, Key: k}
		},
	}).ParseFS(webFS, "web/*.html"))
)

func loadAssets() map[string]asset {
	out := map[string]asset{}
	entries, err := fs.ReadDir(webFS, "web/assets")
	if err != nil {
		panic(err) // embedded at build time: cannot fail at run time
	}
	for _, e := range entries {
		body, err := webFS.ReadFile("web/assets/" + e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(body)
		out[e.Name()] = asset{name: e.Name(), body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return out
}

// serveAsset answers /assets/{name}. The pages link each asset with its
// hash in the query, and the browser revalidates by ETag, so a new release
// is never mixed with an old script.
func serveAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := assets[r.PathValue("name")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	setPageHeaders(w)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", a.etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}

// pageCSP is the pages' Content-Security-Policy with formAction as its
// form-action: a form may post to the service only, but the Manage
// subscription form is answered with a redirect to Stripe's customer
// portal, which browsers check against form-action too.
func pageCSP(formAction string) string {
	return "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
		"base-uri 'none'; form-action " + formAction + "; frame-ancestors 'none'"
}

// pageCSP is a page's Content-Security-Policy on this server.
func (s *Server) pageCSP() string { return pageCSP(s.portalFormAction()) }

func setPageHeaders(w http.ResponseWriter) {
	for k, v := range pageSecurityHeaders {
		w.Header().Set(k, v)
	}
}

// Order page states (data-state of the order's section).
const (
	stateWaiting     = "waiting"     // paid, no key yet (or not recorded yet)
	statePartial     = "partial"     // some keys delivered, more on the way
	stateDelivered   = "delivered"   // every key delivered
	stateRevoked     = "revoked"     // keys taken back after a refund or dispute
	stateFailed      = "failed"      // cannot be fulfilled without the shop
	stateNotFound    = "not_found"   // not a Checkout Session ID at all
	stateBusy        = "busy"        // 429: too many lookups from this client
	stateUnavailable = "unavailable" // 503, or an internal error
)

// orderView is what the templates render of one order. Its keys are read
// from the order API's own JSON, so whatever the API tells of a key
// (hwid_reset among it) reaches the page without a second mapping.
type orderView struct {
	// ID is what the page's URL opened the order with, its Checkout
	// Session ID or a signed link: the script asks the order API with it.
	ID    string
	Ref   string // the short reference the buyer quotes to the shop
	State string
	// Signature is what the script compares with the order API's answer
	// to know the page is out of date (pageSignature).
	Signature   string
	Final       bool
	Keys        []keyView
	KeysPending int
	// ManageURL is where the Manage subscription form posts, for a
	// subscription with a customer; "" shows no button.
	ManageURL string
	// FindKeys: find my keys works here (mail is on), so the page may
	// point to it.
	FindKeys    bool
	FailureCode string
	Now         int64 // unix seconds of the render, for cooldowns
	// ResetCooldown words HWID_RESET_COOLDOWN for the reset's confirmation,
	// e.g. "24 hours".
	ResetCooldown string
	// Discord is the order's verified Discord link section; nil while the
	// link is off or the order has nothing to link.
	Discord *discordView
	// Purchase is what was bought and paid (a known order only); Shop
	// the shop, for its support contact.
	Purchase shop.Summary
	Shop     *shopView
	// Placed is when the order was placed (unix seconds), 0 unknown.
	Placed int64
	// Estimate is how long a partly delivered order's other keys take;
	// Downloads the address its download links begin with ("" shows
	// none): see progress.go and downloads.go.
	Estimate  string
	Downloads string
	// Buyer is the order's state for its buyer, for a delivered or
	// revoked order (see settledState).
	Buyer OrderStateJSON
}

// discordView is the order page's Discord section.
type discordView struct {
	// LinkURL begins a sign-in (a signed order link, never the session ID).
	LinkURL string
	// Username and Status are the verified account's and what became of
	// it ("" when none was verified).
	Username, Status string
}

// Text says what became of the verified account, and what to do.
func (d discordView) Text() string {
	switch order.DiscordVerification(d.Status) {
	case order.DiscordLinking:
		return "Linking it to your keys; this takes a few seconds."
	case order.DiscordVerifiedLinked:
		return "Your keys carry this account (Luarmor links an account to one key per project)."
	case order.DiscordVerifiedInUse:
		return "Another key of the same project already carries this account, so this order's key does not: Luarmor links an account to one key per project. Contact the shop to move it."
	case order.DiscordVerifiedInvalid:
		return "Luarmor refused this account. Contact the shop and quote the order reference below."
	case order.DiscordNoKeys:
		return "This order has no usable key to carry it."
	}
	return "Prove which Discord account is yours to link it to your keys: you sign in with Discord, and the shop sees your username and ID, nothing else."
}

// Heading is the section's first line.
func (d discordView) Heading() string {
	switch {
	case d.Username == "":
		return "Link your Discord account"
	case d.Status == string(order.DiscordVerifiedLinked):
		return "Discord linked: " + d.Username
	}
	return "Discord verified: " + d.Username
}

// keyItem is one key of an order as the "key" template renders it.
type keyItem struct {
	Order *orderView
	Index int
	Key   keyView
}

// keyError is a failed HWID reset as the "hwid-error" template renders it.
type keyError struct {
	Order *orderView
	Text  string
}

type keyView struct {
	UserKey     string `json:"user_key"`
	ProductName string `json:"product_name"`
	Status      string `json:"status"`
	KeyDays     int    `json:"key_days"`
	AuthExpire  *int64 `json:"auth_expire"`
	Ending      bool   `json:"ending"`
	Suspended   bool   `json:"suspended"`
	DiscordLink string `json:"discord_link"`
	// DiscordVerified: the key carries the verified account.
	DiscordVerified bool       `json:"discord_verified"`
	HWIDReset       *hwidReset `json:"hwid_reset"`
	KeyStateJSON
}

// hwidReset is the order API's hwid_reset of a key.
type hwidReset struct {
	Status      string `json:"status"`
	LastResetAt *int64 `json:"last_reset_at"`
	NextResetAt *int64 `json:"next_reset_at"`
	Message     string `json:"message"`
}

func newOrderView(o *order.Order, id string, now time.Time) (orderView, error) {
	api, err := json.Marshal(renderOrder(o))
	if err != nil {
		return orderView{}, fmt.Errorf("rendering order %s for its page: %w", logging.OrderRef(o.CheckoutSessionID), err)
	}
	var fromAPI struct {
		Keys        []keyView `json:"keys"`
		KeysPending int       `json:"keys_pending"`
		OrderStateJSON
	}
	if err := json.Unmarshal(api, &fromAPI); err != nil {
		return orderView{}, fmt.Errorf("reading order %s for its page: %w", logging.OrderRef(o.CheckoutSessionID), err)
	}
	v := orderView{ID: id, Ref: logging.OrderRef(o.CheckoutSessionID), Keys: fromAPI.Keys,
		KeysPending: fromAPI.KeysPending, FailureCode: o.FailureCode, Now: now.Unix(), Purchase: shop.Summarize(o), Placed: unixOrZero(o.Date()),
		Signature: pageSignature(string(o.Status), len(fromAPI.Keys), o.Discord)}
	switch o.Status {
	case order.StatusPending:
		v.State = stateWaiting
		if len(v.Keys) > 0 {
			v.State = statePartial
		}
	case order.StatusFulfilled, order.StatusRevoked:
		v.State, v.Final = settledState(fromAPI.OrderStateJSON), true
		v.Buyer = fromAPI.OrderStateJSON
	default:
		v.State, v.Final = stateFailed, true
	}
	if o.Discord != nil && o.Discord.Status == order.DiscordLinking {
		// The page says the link takes a few seconds: it watches until
		// it is done.
		v.Final = false
	}
	return v, nil
}

// pageSignature is what the page's script compares with the order API's
// answer (signatureOf in page.js) to know its section is out of date: the
// status, the number of keys and what became of a verified Discord account.
func pageSignature(status string, keys int, d *order.VerifiedDiscord) string {
	discordStatus := ""
	if d != nil {
		discordStatus = string(d.Status)
	}
	return fmt.Sprintf("%s|%d|%s", status, keys, discordStatus)
}

// waitingView is the page of a well-formed Checkout Session ID the service
// does not know (yet): exactly the page of a paid order without keys, so
// the page tells no more than the order API's 404 does.
func waitingView(id string) orderView {
	return orderView{ID: id, Ref: logging.OrderRef(id), State: stateWaiting,
		Signature: pageSignature(string(order.StatusPending), 0, nil)}
}

type pageData struct {
	Title string
	// Manage is the manage-subscription page's.
	Manage *manageView
	// FindKeys: find my keys works here (mail is on), so pages may point
	// to it.
	FindKeys bool
	// Order is the order page's.
	Order *orderView
	// Discord is the outcome of a Discord sign-in (discord.html).
	Discord *discordPage
	// Error is an error page's (error.html).
	Error *errorPage
	Shop  *shopView // set by renderPage
}

// orderPage renders GET /orders/{checkout_session_id} through the order
// API's lookup (findOrder), with its rate limits. A revoked session ID
// gets the page of a session ID the service does not know; a refused
// signed link, the page of a malformed ID.
func (s *Server) orderPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("checkout_session_id")
	link, err := s.openLink(r, id)
	var o *order.Order
	if err == nil {
		o, err = s.findOrder(r, link)
	}
	if err != nil && r.Context().Err() != nil {
		return // the client went away
	}
	var view orderView
	status := http.StatusOK
	switch {
	case err == nil:
		if view, err = newOrderView(o, id, time.Now()); err != nil {
			s.logPageError(r, err)
			view, status = orderView{ID: id, State: stateUnavailable}, http.StatusInternalServerError
		} else if view.Discord, err = s.discordSection(r, o, id); err != nil {
			s.logPageError(r, err)
			view, status = orderView{ID: id, State: stateUnavailable}, http.StatusServiceUnavailable
			w.Header().Set("Retry-After", retryAfterUnavailable)
		}
	case order.ErrorCode(err) == order.ENOTFOUND && sessionIDPattern.MatchString(id):
		view = waitingView(id)
	case order.ErrorCode(err) == order.ENOTFOUND:
		view, status = orderView{State: stateNotFound, Final: true}, http.StatusNotFound
	case order.ErrorCode(err) == order.ETOOMANY:
		view, status = orderView{ID: id, State: stateBusy}, http.StatusTooManyRequests
		w.Header().Set("Retry-After", "1")
	default:
		s.logPageError(r, err)
		view, status = orderView{ID: id, State: stateUnavailable}, http.StatusServiceUnavailable
		w.Header().Set("Retry-After", retryAfterUnavailable)
	}
	view.FindKeys = s.Mail != nil
	if o != nil && status == http.StatusOK {
		view.Estimate, view.Downloads = s.deliveryEstimateOf(r, o, &view), s.downloadsPath(r, o, &view)
	}
	if o != nil && status == http.StatusOK && subscriptionManageable(o) {
		if _, managePath, err := s.manageLinks(r, o); err == nil {
			view.ManageURL = managePath
		} else {
			s.logPageError(r, err) // the page without its button: the keys matter more
		}
	}
	s.renderPage(w, r, status, "order.html", pageData{Title: "Your order", Order: &view, FindKeys: view.FindKeys})
}

// logPageError logs a failed lookup as the order API does: an outage at
// warn once in a while, anything else at error; never the session ID.
func (s *Server) logPageError(r *http.Request, err error) {
	if postgres.IsUnavailable(err) || order.ErrorCode(err) == order.EUNAVAILABLE {
		s.unavailable.Log(r.Context(), s.Logger, slog.LevelWarn, "dependency unavailable; order page answered 503",
			"route", routeOf(r), "error", logSafe(r, err))
		return
	}
	s.Logger.ErrorContext(r.Context(), "order page failed", "route", routeOf(r), "error", logSafe(r, err))
}

// discordSection is the order page's Discord section for o, opened with
// id: nil while the link is off, or for an order with nothing to link. Its
// button carries a signed link: id when it is one, else a fresh one.
func (s *Server) discordSection(r *http.Request, o *order.Order, id string) (*discordView, error) {
	if s.Discord == nil || o.Status == order.StatusRevoked || o.Status == order.StatusFailed {
		return nil, nil
	}
	link := id
	if !jobs.IsOrderLink(id) {
		links, err := s.orderLinks(r)
		if err != nil {
			return nil, err
		}
		link = links.Sign(o, time.Now().Add(discordLinkTTL))
	}
	v := &discordView{LinkURL: "/orders/" + link + "/discord"}
	if o.Discord != nil {
		v.Username, v.Status = o.Discord.Username, string(o.Discord.Status)
	}
	return v, nil
}

// myKeysPage renders GET /my-keys: the find-my-keys form; with a token in
// the URL fragment, its script lists that email's orders. Find my keys
// sends links by email: while mail is off the page is not there (404), and
// says where the keys are instead.
func (s *Server) myKeysPage(w http.ResponseWriter, r *http.Request) {
	if s.Mail == nil {
		s.renderPage(w, r, http.StatusNotFound, "my-keys-off.html", pageData{Title: "Find my keys"})
		return
	}
	s.renderPage(w, r, http.StatusOK, "my-keys.html", pageData{Title: "Find my keys", FindKeys: true})
}

func (s *Server) renderPage(w http.ResponseWriter, r *http.Request, status int, name string, data pageData) {
	data.Shop = s.shopView()
	if data.Order != nil {
		data.Order.Shop = data.Shop
		data.Order.ResetCooldown = cooldownText(s.hwidResetCooldown())
	}
	var body bytes.Buffer
	if err := templates.ExecuteTemplate(&body, name, data); err != nil {
		s.Logger.ErrorContext(r.Context(), "rendering a page failed", "route", routeOf(r), "error", logSafe(r, err))
		if name != errorTemplate {
			s.renderErrorPage(w, r, http.StatusInternalServerError)
			return
		}
		http.Error(w, "internal error; retry shortly", http.StatusInternalServerError)
		return
	}
	setPageHeaders(w)
	w.Header().Set("Content-Security-Policy", s.pageCSPFor())
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body.Bytes())
}

// Texts of a key, in one place for the templates.

// ExpiryLabel and ExpiryText tell when a key stops working, in the words
// of the keys email.
func (k keyView) ExpiryLabel() string {
	switch {
	case order.KeyState(k.State) == order.KeyStateEnding:
		return "Runs until"
	case order.KeyState(k.State) == order.KeyStateExpired:
		return "Expired"
	case k.Ending:
		return "Ends"
	}
	return "Expires"
}

func (k keyView) ExpiryText() string {
	return mail.Expiry(order.Key{AuthExpire: k.AuthExpire, KeyDays: k.KeyDays})
}

// Usable is a key the buyer can run: copy, loader line and HWID reset.
func (k keyView) Usable() bool { return order.KeyState(k.State).Works() }

// StatusText names a key's state for the buyer (the badge); StateNote
// (state.go) tells the rest.
func (k keyView) StatusText() string { return badgeText(k.KeyStateJSON) }

// DiscordText says what became of the buyer's Discord ID and what to do.
// An ID typed at checkout is a claim, and is named so.
func (k keyView) DiscordText() string {
	if k.DiscordVerified {
		return "Linked to your verified Discord account."
	}
	switch order.DiscordLink(k.DiscordLink) {
	case order.DiscordLinked:
		return "Linked to the Discord ID typed at checkout (not verified: anyone can type an ID)."
	case order.DiscordInUse:
		return "Your Discord account already holds another key, so this one is not linked: claim it with the Redeem button in the shop's Discord."
	case order.DiscordInvalid:
		return "The Discord ID given at checkout was refused, so this key is not linked: claim it with the Redeem button in the shop's Discord."
	default:
		return "Not linked to Discord: claim it with the Redeem button in the shop's Discord if the shop uses one."
	}
}

// HWIDText tells the state of the key's HWID resets; ResetAllowed whether
// the Reset HWID button may be pressed at now.
func (k keyView) HWIDText(now int64) string {
	h := k.HWIDReset
	if h == nil {
		return "Moved to another computer? Reset the key's HWID (hardware ID) to use it there."
	}
	var parts []string
	switch h.Status {
	case "queued":
		parts = append(parts, "HWID reset requested; it takes effect in a moment.")
	case "done":
		if h.LastResetAt != nil {
			parts = append(parts, "HWID reset done at "+formatTime(*h.LastResetAt)+".")
		} else {
			parts = append(parts, "HWID reset done.")
		}
	case "failed":
		// Told by the error block under it (HWIDFailed).
	default:
		parts = append(parts, "Moved to another computer? Reset the key's HWID (hardware ID) to use it there.")
	}
	return strings.Join(parts, " ")
}

// NextResetAt is when the next reset is allowed, if that is after now: the
// time the page shows, in UTC for a page without script and in the
// buyer's own zone by its script.
func (k keyView) NextResetAt(now int64) *int64 {
	if h := k.HWIDReset; h != nil && h.NextResetAt != nil && *h.NextResetAt > now {
		return h.NextResetAt
	}
	return nil
}

// HWIDFailed is whether the key's last reset failed; HWIDFailure its
// reason.
func (k keyView) HWIDFailed() bool { return k.HWIDReset != nil && k.HWIDReset.Status == "failed" }

// ResetAllowed is whether the Reset HWID button is offered now.
func (k keyView) ResetAllowed(now int64) bool {
	h := k.HWIDReset
	return h == nil || (h.Status != "queued" && (h.NextResetAt == nil || *h.NextResetAt <= now))
}

// HWIDStatus is the key's hwid_reset status, "none" when absent.
func (k keyView) HWIDStatus() string {
	if k.HWIDReset == nil || k.HWIDReset.Status == "" {
		return "none"
	}
	return k.HWIDReset.Status
}

// LoaderLine is the line the buyer puts above the shop's loader script.
func (k keyView) LoaderLine() string { return mail.Loader(k.UserKey) }

// hwidResetCooldown is HWID_RESET_COOLDOWN, as the order workflow holds it.
func (s *Server) hwidResetCooldown() time.Duration {
	if s.Orders != nil && s.Orders.HWIDResetCooldown > 0 {
		return s.Orders.HWIDResetCooldown
	}
	return order.DefaultHWIDResetCooldown
}

// isoTime is a unix time as an HTML datetime (RFC 3339, UTC).
func isoTime(unix int64) string { return time.Unix(unix, 0).UTC().Format(time.RFC3339) }

// cooldownText words a cooldown for the buyer: "24 hours", "90 minutes",
// "3 days".
func cooldownText(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d >= 72*time.Hour && d%(24*time.Hour) == 0:
		return plural(int64(d/(24*time.Hour)), "day")
	case d >= time.Hour && d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour")
	case d >= time.Minute:
		return plural(int64(d/time.Minute), "minute")
	}
	return plural(int64(max(d/time.Second, 1)), "second")
}

// formatTime is a unix time in UTC as the keys email writes it, the same
// for every buyer whatever their browser's zone.
func formatTime(unix int64) string {
	return time.Unix(unix, 0).UTC().Format("2 January 2006 15:04 MST")
}
