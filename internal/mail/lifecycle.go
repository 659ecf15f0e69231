package mail

import (
	"fmt"
	htmltemplate "html/template"
	"slices"
	"strings"
	texttemplate "text/template"
	"time"

	"fulfiller/internal/logging"
	"fulfiller/internal/order"
	"fulfiller/internal/shop"
)

// Kind names an email the service sends on its own: the keys email once an
// order's keys are delivered, and the lifecycle emails that follow what
// happens to them. The shop turns kinds off by name (MAIL_DISABLE).
type Kind string

const (
	// KindKeys: every key of an order is delivered (KeysEmail). Support's
	// resend and the fresh link after a rotation are sent whatever
	// MAIL_DISABLE says: an operator asked for them.
	KindKeys Kind = "keys"
	// KindReissued: support (or the stock check) replaced a key; the new
	// key is emailed (ReissuedEmail).
	KindReissued Kind = "reissued"
	// KindPaymentFailed: a subscription's renewal was not paid
	// (invoice.payment_failed), once per invoice (PaymentFailedEmail).
	KindPaymentFailed Kind = "payment_failed"
	// KindCancelled: a subscription was cancelled, or set to cancel at
	// the end of its period, once per period (CancelledEmail).
	KindCancelled Kind = "cancelled"
	// KindRevoked: a refund, a chargeback or a fraud warning revoked a
	// delivered order's keys, once per revocation (RevokedEmail).
	KindRevoked Kind = "revoked"
	// KindExpiring: a key that will not renew runs out within
	// MAIL_EXPIRY_NOTICE_DAYS, once per key and expiry (ExpiringEmail).
	KindExpiring Kind = "expiring"
	// KindTrialEnding: Stripe announced the end of a trial
	// (customer.subscription.trial_will_end), once per trial end
	// (TrialEndingEmail).
	KindTrialEnding Kind = "trial_ending"
)

// Kinds lists every kind, in the order MAIL_DISABLE's documentation
// names them.
var Kinds = []Kind{KindKeys, KindReissued, KindPaymentFailed, KindCancelled, KindRevoked, KindExpiring, KindTrialEnding}

// KindSet is a set of kinds (the ones MAIL_DISABLE turns off). The zero
// value is empty.
type KindSet uint16

func (k Kind) bit() KindSet { return 1 << KindSet(slices.Index(Kinds, k)) }

// Has reports whether k is in the set.
func (s KindSet) Has(k Kind) bool { return slices.Contains(Kinds, k) && s&k.bit() != 0 }

// With returns the set with k added.
func (s KindSet) With(k Kind) KindSet { return s | k.bit() }

// String lists the set's kinds, comma-separated.
func (s KindSet) String() string {
	var names []string
	for _, k := range Kinds {
		if s.Has(k) {
			names = append(names, string(k))
		}
	}
	return strings.Join(names, ",")
}

// ParseKinds reads a comma-separated list of kinds (MAIL_DISABLE). An
// unknown name is refused by name, with the names there are.
func ParseKinds(raw string) (KindSet, error) {
	var s KindSet
	var unknown []string
	for _, name := range strings.Split(raw, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(Kinds, Kind(name)) {
			unknown = append(unknown, fmt.Sprintf("%q", name))
			continue
		}
		s = s.With(Kind(name))
	}
	if len(unknown) > 0 {
		names := make([]string, len(Kinds))
		for i, k := range Kinds {
			names[i] = string(k)
		}
		return s, fmt.Errorf("names no email kind %s; the kinds are %s", strings.Join(unknown, ", "), strings.Join(names, ", "))
	}
	return s, nil
}

// MaxExpiryNoticeDays bounds MAIL_EXPIRY_NOTICE_DAYS.
const MaxExpiryNoticeDays = 90

// dateFormat is how a lifecycle email writes a moment: in UTC, like the
// keys email's expiry, since the buyer's zone is not known.
const dateFormat = "2 January 2006 15:04 MST"

// FormatDate writes t as the emails do.
func FormatDate(t time.Time) string { return t.UTC().Format(dateFormat) }

// Lifecycle is what every lifecycle email holds: who it goes to, the
// shop's identity, the order it is about and the links the buyer acts
// through.
type Lifecycle struct {
	To        string
	MessageID string
	Shop      shop.Identity
	Order     shop.Summary
	// Product is what the email is about: the key's product, or the
	// order's products.
	Product string
	// OrderURL is the order page, by a signed link (never the Checkout
	// Session ID).
	OrderURL string
	// ManageURL is the Manage subscription page of a subscription with a
	// Stripe customer; "" otherwise.
	ManageURL string
}

// NewLifecycle is the part every lifecycle email of o shares, linking to
// the order with linkToken (a signed order link). key, when not nil, is
// the key the email is about; its product names the email.
func NewLifecycle(o *order.Order, key *order.Key, publicBaseURL, linkToken, messageID string) Lifecycle {
	l := Lifecycle{To: o.CustomerEmail, MessageID: messageID, Order: shop.Summarize(o), OrderURL: OrderURL(publicBaseURL, linkToken)}
	if o.Mode == "subscription" && o.CustomerID != "" {
		l.ManageURL = ManageSubscriptionURL(publicBaseURL, linkToken)
	}
	if key != nil {
		l.Product = o.ProductName(*key)
		return l
	}
	// The products bought; an order recorded before its lines were kept
	// goes by its keys' products.
	var names []string
	for _, line := range l.Order.Lines {
		if !slices.Contains(names, line.Name) {
			names = append(names, line.Name)
		}
	}
	if len(names) == 0 {
		for _, k := range o.Keys {
			if name := o.ProductName(k); !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	l.Product = strings.Join(names, ", ")
	return l
}

// subject is a subject naming the shop when it has a name.
func (l Lifecycle) subject(s string) string {
	if l.Shop.Name == "" {
		return s
	}
	return s + " · " + l.Shop.Name
}

// Message is an email ready to render and send.
type Message interface {
	Kind() Kind
	Subject() string
	Render() (text, html string, err error)
	envelope() Lifecycle
}

func (l Lifecycle) envelope() Lifecycle { return l }

// Each lifecycle email's templates are parsed with the shop's (the
// header, the support line, the order's summary).
func lifecycleTemplates(name string) (*texttemplate.Template, *htmltemplate.Template) {
	return texttemplate.Must(texttemplate.New(name+".txt").ParseFS(templateFS, "templates/"+name+".txt", "templates/shop.txt")),
		htmltemplate.Must(htmltemplate.New(name+".html").ParseFS(templateFS, "templates/"+name+".html", "templates/shop.html"))
}

var (
	reissuedText, reissuedHTML           = lifecycleTemplates("reissued")
	paymentFailedText, paymentFailedHTML = lifecycleTemplates("payment_failed")
	cancelledText, cancelledHTML         = lifecycleTemplates("cancelled")
	revokedText, revokedHTML             = lifecycleTemplates("revoked")
	expiringText, expiringHTML           = lifecycleTemplates("expiring")
	trialEndingText, trialEndingHTML     = lifecycleTemplates("trial_ending")
)

// ReissuedEmail brings the buyer the key that replaced one of theirs: the
// old key stops working, the new one is shown as the keys email shows it.
type ReissuedEmail struct {
	Lifecycle
	Key KeyLine
	// OldKey is the replaced key's last four characters (…WXYZ): enough
	// to recognise it, nothing to use.
	OldKey string
}

// NewReissuedEmail is the email of newKey, which replaced oldKey.
func NewReissuedEmail(l Lifecycle, o *order.Order, newKey, oldKey order.Key) ReissuedEmail {
	return ReissuedEmail{Lifecycle: l, OldKey: logging.MaskKey(oldKey.UserKey),
		Key: KeyLine{Product: o.ProductName(newKey), UserKey: newKey.UserKey, Loader: Loader(newKey.UserKey), Expiry: Expiry(newKey)}}
}

func (ReissuedEmail) Kind() Kind { return KindReissued }

func (e ReissuedEmail) Subject() string { return e.subject("Your new license key") }

func (e ReissuedEmail) Render() (text, html string, err error) {
	return render(reissuedText, reissuedHTML, e)
}

// PaymentFailedEmail tells a subscriber their renewal was not paid and
// what to do: pay, or update the payment method, through Manage
// subscription.
type PaymentFailedEmail struct {
	Lifecycle
	// Suspended: the keys stop working until the renewal is paid
	// (PAST_DUE_ACTION=suspend); otherwise they keep working while Stripe
	// retries.
	Suspended bool
}

func (PaymentFailedEmail) Kind() Kind { return KindPaymentFailed }

func (e PaymentFailedEmail) Subject() string {
	if e.Suspended {
		return e.subject("Payment failed: your subscription is suspended")
	}
	return e.subject("Payment failed for your subscription")
}

func (e PaymentFailedEmail) Render() (text, html string, err error) {
	return render(paymentFailedText, paymentFailedHTML, e)
}

// CancelledEmail tells a subscriber their subscription will not renew and
// until when the keys work.
type CancelledEmail struct {
	Lifecycle
	// Until is when the keys stop working, in words ("" when unknown).
	Until string
	// Ended: Stripe ended the subscription; otherwise it is set to end at
	// the end of its period and may still be resumed.
	Ended bool
}

func (CancelledEmail) Kind() Kind { return KindCancelled }

func (e CancelledEmail) Subject() string { return e.subject("Your subscription is cancelled") }

func (e CancelledEmail) Render() (text, html string, err error) {
	return render(cancelledText, cancelledHTML, e)
}

// RevokedEmail tells the buyer their keys were revoked and why, in the
// words the shop shows its key's user (the policy's ban reason), never
// anything internal.
type RevokedEmail struct {
	Lifecycle
	Reason string
}

func (RevokedEmail) Kind() Kind { return KindRevoked }

func (e RevokedEmail) Subject() string { return e.subject("Your license keys were revoked") }

func (e RevokedEmail) Render() (text, html string, err error) {
	return render(revokedText, revokedHTML, e)
}

// ExpiringEmail tells the buyer a key that will not renew runs out soon.
type ExpiringEmail struct {
	Lifecycle
	Key  string // the key's last four characters
	Ends string // when, in words
	Days int    // how many days ahead (rounded up)
}

// NewExpiringEmail is the notice of key k, which runs out at ends.
func NewExpiringEmail(l Lifecycle, k order.Key, ends, now time.Time) ExpiringEmail {
	days := max(1, int((ends.Sub(now)+24*time.Hour-time.Second)/(24*time.Hour)))
	return ExpiringEmail{Lifecycle: l, Key: logging.MaskKey(k.UserKey), Ends: FormatDate(ends), Days: days}
}

func (ExpiringEmail) Kind() Kind { return KindExpiring }

func (e ExpiringEmail) Subject() string {
	if e.Days == 1 {
		return e.subject("Your access ends in 1 day")
	}
	return e.subject(fmt.Sprintf("Your access ends in %d days", e.Days))
}

func (e ExpiringEmail) Render() (text, html string, err error) {
	return render(expiringText, expiringHTML, e)
}

// TrialEndingEmail tells a subscriber their trial ends soon and that the
// subscription then renews, paid by the payment method on file.
type TrialEndingEmail struct {
	Lifecycle
	Ends string // when the trial ends, in words
}

func (TrialEndingEmail) Kind() Kind { return KindTrialEnding }

func (e TrialEndingEmail) Subject() string { return e.subject("Your trial ends soon") }

func (e TrialEndingEmail) Render() (text, html string, err error) {
	return render(trialEndingText, trialEndingHTML, e)
}
