package mail

import (
	"bytes"
	"embed"
	htmltemplate "html/template"
	"io"
	"net/url"
	"strconv"
	texttemplate "text/template"
	"time"

	"fulfiller/internal/order"
	"fulfiller/internal/shop"
)

// Subject is the keys email's subject of a shop without a name
// (SHOP_NAME); with one, it names the shop (KeysEmail.Subject).
const Subject = "Your license keys"

//go:embed templates/*.txt templates/*.html
var templateFS embed.FS

var funcs = map[string]any{"inc": func(i int) int { return i + 1 }}

// Each message's templates are parsed with the shop's (shop.txt,
// shop.html): the header and the support line every email shares.
var (
	textTemplate = texttemplate.Must(texttemplate.New("keys.txt").Funcs(funcs).ParseFS(templateFS, "templates/keys.txt", "templates/shop.txt"))
	// html/template escapes every value for its context: a hostile email
	// address, key, URL, shop or product name cannot add markup or a
	// script, and a colour that is not one cannot add a style.
	htmlTemplate = htmltemplate.Must(htmltemplate.New("keys.html").Funcs(funcs).ParseFS(templateFS, "templates/keys.html", "templates/shop.html"))

	lookupTextTemplate = texttemplate.Must(texttemplate.New("lookup.txt").ParseFS(templateFS, "templates/lookup.txt", "templates/shop.txt"))
	lookupHTMLTemplate = htmltemplate.Must(htmltemplate.New("lookup.html").ParseFS(templateFS, "templates/lookup.html", "templates/shop.html"))
)

// executor is what a text or an HTML template has in common.
type executor interface {
	Execute(w io.Writer, data any) error
}

// render executes a message's plain-text and HTML templates with data.
func render(textT, htmlT executor, data any) (text, html string, err error) {
	var tb, hb bytes.Buffer
	if err := textT.Execute(&tb, data); err != nil {
		return "", "", err
	}
	if err := htmlT.Execute(&hb, data); err != nil {
		return "", "", err
	}
	return tb.String(), hb.String(), nil
}

// KeysEmail is one keys email, ready to render and send.
type KeysEmail struct {
	To       string
	OrderURL string
	// ManageURL is the order's Manage subscription page, for a
	// subscription with a Stripe customer; "" otherwise. Never a customer
	// portal URL: those expire within minutes.
	ManageURL string
	Keys      []KeyLine
	// Shop is who sold the keys (SHOP_*); Order what was bought and paid.
	Shop  shop.Identity
	Order shop.Summary
	// MessageID is the Message-ID header's value (without brackets): the
	// same for every attempt of one delivery, so a mail client that sees
	// a repeated send can tell it is the same message.
	MessageID string
}

// KeyLine is one key as the email shows it.
type KeyLine struct {
	// Product is what the key was sold as (order.Order.ProductName).
	Product string
	UserKey string
	Loader  string // script_key = "KEY";
	Expiry  string // a date, "starts at first use" or "never"
}

// NewKeysEmail builds the email of an order's delivered keys, linking to the
// order with linkToken: a signed link, never the Checkout Session ID, which
// cannot expire and stays in the buyer's mailbox. The keys are those
// delivered and usable, each once (units that extended one key share it).
func NewKeysEmail(o *order.Order, publicBaseURL, linkToken, messageID string) KeysEmail {
	e := KeysEmail{
		To:        o.CustomerEmail,
		OrderURL:  OrderURL(publicBaseURL, linkToken),
		MessageID: messageID,
		Order:     shop.Summarize(o),
	}
	if o.Mode == "subscription" && o.CustomerID != "" {
		e.ManageURL = ManageSubscriptionURL(publicBaseURL, linkToken)
	}
	seen := map[string]bool{}
	for _, k := range o.Keys {
		if !k.Delivered() || k.Status != order.KeyActive || seen[k.UserKey] {
			continue
		}
		seen[k.UserKey] = true
		e.Keys = append(e.Keys, KeyLine{Product: o.ProductName(k), UserKey: k.UserKey, Loader: Loader(k.UserKey), Expiry: Expiry(k)})
	}
	return e
}

// OrderURL is the hosted page of an order, opened with an order link token.
func OrderURL(publicBaseURL, linkToken string) string {
	return publicBaseURL + "/orders/" + url.PathEscape(linkToken)
}

// ManageSubscriptionURL is the page from which the buyer of a subscription
// opens Stripe's customer portal (its button creates a portal session
// then), opened with an order link token.
func ManageSubscriptionURL(publicBaseURL, linkToken string) string {
	return OrderURL(publicBaseURL, linkToken) + "/manage-subscription"
}

// Loader is the line the buyer puts above the script.
func Loader(userKey string) string { return "script_key = " + strconv.Quote(userKey) + ";" }

// Expiry says when a key expires, in words a buyer reads.
func Expiry(k order.Key) string {
	switch k.Expiry() {
	case order.NeverExpires:
		return "never"
	case order.ExpiresAfterFirstUse:
		return "starts at first use (" + strconv.Itoa(k.KeyDays) + " days)"
	}
	return time.Unix(*k.AuthExpire, 0).UTC().Format("2 January 2006 15:04 MST")
}

// Render returns the plain-text and HTML bodies.
func (e KeysEmail) Render() (text, html string, err error) {
	return render(textTemplate, htmlTemplate, e)
}

// KeyLookupSubject is the subject of the find-my-keys email.
const KeyLookupSubject = "Your link to your license keys"

// KeyLookupEmail carries a find-my-keys link: the page that lists the
// orders bought with the address, for as long as the link's token lasts.
type KeyLookupEmail struct {
	// Shop is the shop the buyer asked (SHOP_*).
	Shop      shop.Identity
	To        string
	LinkURL   string
	ExpiresAt string // when the link stops working, in words
	MessageID string
}

// NewKeyLookupEmail builds the find-my-keys email of token, which expires
// at expiresAt.
func NewKeyLookupEmail(to, publicBaseURL, token, messageID string, expiresAt time.Time) KeyLookupEmail {
	return KeyLookupEmail{To: to, LinkURL: MyKeysURL(publicBaseURL, token), MessageID: messageID,
		ExpiresAt: expiresAt.UTC().Format("2 January 2006 15:04 MST")}
}

// MyKeysURL is the find-my-keys page with token in its fragment: a browser
// sends the fragment to no server (no access log, no Referer); the page's
// script reads it.
func MyKeysURL(publicBaseURL, token string) string {
	return publicBaseURL + "/my-keys#token=" + url.QueryEscape(token)
}

// Render returns the plain-text and HTML bodies.
func (e KeyLookupEmail) Render() (text, html string, err error) {
	return render(lookupTextTemplate, lookupHTMLTemplate, e)
}
