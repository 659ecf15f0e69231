package stripefake

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"time"
)

// The customer portal: POST /v1/billing_portal/sessions opens a session
// for a customer, answered as Stripe's billing_portal.session object, and
// its url is a page the fake serves itself (GET /_fake/portal/session/...),
// so a browser sent there by the service lands on something.

// DefaultPortalConfiguration is the ID of the account's default portal
// configuration, the one every session uses.
const DefaultPortalConfiguration = "bpc_fake_default"

// portalNotConfiguredMessage is Stripe's answer, word for word, to a
// portal session of an account (in test mode) that never saved its portal
// settings.
const portalNotConfiguredMessage = "No configuration provided and your test mode default configuration has not been created. " +
	"Provide a configuration or create your default by saving your customer portal settings in test mode at " +
	"https://dashboard.stripe.com/test/settings/billing/portal."

// portalPagePrefix is where the fake serves a session's portal page.
const portalPagePrefix = "/_fake/portal/session/"

// PortalSession is one customer portal session the fake opened.
type PortalSession struct {
	ID        string
	Customer  string
	ReturnURL string // "" when the request gave none
	// URL is the portal page's address, on the fake itself.
	URL     string
	Created time.Time
}

// portalState is the fake's customer portal: sessions in the order they
// were opened, and what Idempotency-Key answered what.
type portalState struct {
	disabled   bool
	sessions   []PortalSession
	byToken    map[string]int    // token of a session's URL -> index in sessions
	idempotent map[string][]byte // Idempotency-Key -> the answer sent
}

// SetBillingPortalConfigured says whether the account has a customer
// portal configuration (it has, by default). Without one, portal sessions
// are refused as Stripe refuses them: 400 invalid_request_error, no code,
// the message telling the shop to save its portal settings.
func (f *Fake) SetBillingPortalConfigured(configured bool) {
	f.mu.Lock()
	f.portal.disabled = !configured
	f.mu.Unlock()
}

// BillingPortalSessions returns the customer portal sessions opened so
// far, oldest first.
func (f *Fake) BillingPortalSessions() []PortalSession {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]PortalSession(nil), f.portal.sessions...)
}

// portalParams are the parameters POST /v1/billing_portal/sessions takes
// here: what the service sends, and expand. Stripe takes a few more
// (flow_data, locale, on_behalf_of); the fake refuses them as unknown.
var portalParams = map[string]bool{"customer": true, "return_url": true, "configuration": true}

// createPortalSession serves POST /v1/billing_portal/sessions.
func (f *Fake) createPortalSession(w http.ResponseWriter, r *http.Request) {
	params, e := formParams(w, r, func(k string) bool { return portalParams[k] || isExpandKey(k) })
	if e != nil {
		e.write(w)
		return
	}
	idempotencyKey := r.Header.Get("Idempotency-Key")
	if idempotencyKey != "" {
		f.mu.Lock()
		answer, seen := f.portal.idempotent[idempotencyKey]
		f.mu.Unlock()
		if seen {
			// Stripe replays the first answer to a repeated request.
			w.Header().Set("Idempotent-Replayed", "true")
			writeRaw(w, http.StatusOK, answer)
			return
		}
	}
	customer := params.Get("customer")
	returnURL := params.Get("return_url")
	switch {
	case customer == "":
		badParam("customer", "Missing required param: customer.").write(w)
		return
	case params.Has("return_url") && !validReturnURL(returnURL):
		e := badParam("return_url", "Not a valid URL")
		e.Code = "url_invalid"
		e.write(w)
		return
	case params.Has("configuration") && params.Get("configuration") != DefaultPortalConfiguration:
		e := badParam("configuration", fmt.Sprintf("No such configuration: '%s'", params.Get("configuration")))
		e.Code = "resource_missing"
		e.write(w)
		return
	case !f.knowsCustomer(customer):
		e := badParam("customer", fmt.Sprintf("No such customer: '%s'", customer))
		e.Code = "resource_missing"
		e.write(w)
		return
	}
	f.mu.Lock()
	disabled := f.portal.disabled
	f.mu.Unlock()
	if disabled {
		badParam("", portalNotConfiguredMessage).write(w)
		return
	}

	token := randomToken()
	s := PortalSession{ID: "bps_" + randomToken()[:24], Customer: customer, ReturnURL: returnURL,
		URL: "http://" + r.Host + portalPagePrefix + "test_" + token, Created: f.now()}
	obj := map[string]any{
		"id": s.ID, "object": "billing_portal.session", "configuration": DefaultPortalConfiguration,
		"created": s.Created.Unix(), "customer": customer, "flow": nil, "livemode": false, "locale": nil,
		"on_behalf_of": nil, "return_url": nullable(returnURL), "url": s.URL,
	}
	answer, err := json.Marshal(obj)
	if err != nil {
		panic("stripefake: encoding a portal session: " + err.Error())
	}
	f.mu.Lock()
	if f.portal.byToken == nil {
		f.portal.byToken, f.portal.idempotent = map[string]int{}, map[string][]byte{}
	}
	f.portal.byToken["test_"+token] = len(f.portal.sessions)
	f.portal.sessions = append(f.portal.sessions, s)
	if idempotencyKey != "" {
		f.portal.idempotent[idempotencyKey] = answer
	}
	f.mu.Unlock()
	writeRaw(w, http.StatusOK, answer)
}

// formParams reads a POST's parameters, form-encoded in its body as
// Stripe's clients send them (none in the query), refusing those accepted
// does not take, as Stripe refuses unknown parameters.
func formParams(w http.ResponseWriter, r *http.Request, accepted func(string) bool) (url.Values, *apiError) {
	if r.URL.RawQuery != "" {
		return nil, badParam("", "This fake takes a POST's parameters in its body, form-encoded, as Stripe's libraries send them.")
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/x-www-form-urlencoded" {
			return nil, badParam("", "Invalid Content-Type: send parameters as application/x-www-form-urlencoded.")
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFakeBody)
	if err := r.ParseForm(); err != nil {
		return nil, badParam("", "Invalid request body: "+err.Error())
	}
	for k := range r.PostForm {
		if !accepted(k) {
			return nil, &apiError{status: http.StatusBadRequest, Type: "invalid_request_error", Code: "parameter_unknown",
				Param: k, Message: "Received unknown parameter: " + k}
		}
	}
	return r.PostForm, nil
}

// validReturnURL is what Stripe takes as a return_url: an absolute http(s)
// URL.
func validReturnURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// knowsCustomer reports whether a stored object (a session, a
// subscription, an invoice...) names customer id: the fake keeps no
// customers of their own, so a customer exists once something of it does.
func (f *Fake) knowsCustomer(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, byID := range f.objects {
		for _, obj := range byID {
			if c, _ := obj["customer"].(string); c == id {
				return true
			}
		}
	}
	return false
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// portalPage serves GET /_fake/portal/session/{token}: a minimal page in
// place of Stripe's portal, naming the customer and their subscriptions,
// with the link back to the session's return URL.
func (f *Fake) portalPage(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	i, ok := f.portal.byToken[r.PathValue("token")]
	var s PortalSession
	if ok {
		s = f.portal.sessions[i]
	}
	var subs []portalSubscription
	for id, obj := range f.objects[KindSubscription] {
		if c, _ := obj["customer"].(string); ok && c == s.Customer {
			status, _ := obj["status"].(string)
			subs = append(subs, portalSubscription{ID: id, Status: status})
		}
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("<!doctype html><title>Session expired</title><h1>This portal session does not exist</h1>\n"))
		return
	}
	sort.Slice(subs, func(a, b int) bool { return subs[a].ID < subs[b].ID })
	_ = portalPageTemplate.Execute(w, portalPageData{Session: s, Subscriptions: subs})
}

type portalSubscription struct{ ID, Status string }

type portalPageData struct {
	Session       PortalSession
	Subscriptions []portalSubscription
}

var portalPageTemplate = template.Must(template.New("portal").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Customer portal (Stripe stand-in)</title></head>
<body>
<main>
<h1>Customer portal</h1>
<p>The Stripe stand-in's page in place of Stripe's customer portal, for customer <code id="customer">{{.Session.Customer}}</code>.</p>
{{if .Subscriptions}}<ul id="subscriptions">{{range .Subscriptions}}<li><code>{{.ID}}</code>: {{.Status}}</li>{{end}}</ul>{{else}}<p>No subscriptions.</p>{{end}}
{{if .Session.ReturnURL}}<p><a id="return" href="{{.Session.ReturnURL}}">Return to the shop</a></p>{{end}}
</main>
</body>
</html>
`))
