// Package order holds the service's domain: an order is one Stripe Checkout
// Session, and it owns one license key per purchased unit. No adapter
// (HTTP, Stripe, Luarmor, PostgreSQL) owns these types; they all speak them.
package order

import (
	"errors"
	"fmt"
	"time"
)

// Status is an order's state as the shop's frontend sees it.
//
// Transitions (enforced in internal/postgres, each with a case in
// TestOrderStatusTransitions):
//
//	(new)     → pending    a Checkout Session is recorded (UpsertOrder)
//	pending   → fulfilled  its items are loaded and every unit has a key (settleOrder)
//	pending   → failed     a payment failed, a price is missing, a bound is exceeded, Luarmor
//	                       refused a key, the event's mode or session is wrong (FailOrder, FailKey)
//	fulfilled → failed     its subscription moved to a price the catalog lacks: a key of the new
//	                       price cannot be made until an operator fixes the catalog and retries
//	                       (FailSubscriptionChange); the keys delivered keep what was paid
//	failed    → pending    an operator retries after fixing the cause (ResetFailures), or the
//	                       missing price's units are recorded (AddUnits); never for payment_failed
//	pending   → revoked    a dispute or refund took the payment back (RevokeOrder); a refund of
//	                       one subscription invoice only when no renewal's period holds its keys
//	fulfilled → revoked    likewise, after delivery
//	revoked   → fulfilled  the revocation was lifted, or a renewal paid since holds the keys a
//	                       refund of the first invoice revoked, and every key is delivered
//	                       (RestoreOrder, RestoreRefundedOrders)
//	revoked   → pending    likewise, with units left to be made
//
// Nothing else moves an order: a failure never touches a fulfilled or
// revoked order, and a revoked order stays revoked while any revocation of
// its payment is active.
type Status string

const (
	StatusPending   Status = "pending"   // paid or awaiting payment; keys not all delivered yet
	StatusFulfilled Status = "fulfilled" // every key delivered
	StatusRevoked   Status = "revoked"   // keys taken back after a dispute or refund
	StatusFailed    Status = "failed"    // cannot be delivered without an operator or a new payment
)

// KeyStatus is the state of one delivered (or to be delivered) key.
type KeyStatus string

const (
	KeyPending     KeyStatus = "pending" // not created in Luarmor yet
	KeyActive      KeyStatus = "active"
	KeyFailed      KeyStatus = "failed" // Luarmor refused it; see LastError
	KeyBlacklisted KeyStatus = "blacklisted"
	KeyDeleted     KeyStatus = "deleted"
	// KeyReverted: the purchase only added days to a key of an earlier
	// purchase, and a revocation took those days back; that key is not
	// banned, since the customer paid for it before.
	KeyReverted KeyStatus = "reverted"
)

// DiscordLink is what became of the buyer's Discord ID on one key. A
// Discord ID typed at checkout is a claim, not proof: it never hands over
// a key that another customer paid for.
type DiscordLink string

const (
	// DiscordNone: no Discord ID for this unit (none was given, or it went
	// to the order's first unit in the project).
	DiscordNone DiscordLink = "none"
	// DiscordLinked: the key was created with, or extended on, the
	// buyer's Discord ID.
	DiscordLinked DiscordLink = "linked"
	// DiscordInUse: the ID already had another customer's key, so this key
	// was made without it; the buyer claims it with Luarmor's Redeem button.
	DiscordInUse DiscordLink = "in_use"
	// DiscordInvalid: Luarmor refused the ID, so the key was made without it.
	DiscordInvalid DiscordLink = "invalid"
)

// Failure codes recorded on failed orders; stable for operators' queries.
const (
	FailureUnknownPrice   = "unknown_price"
	FailurePaymentFailed  = "payment_failed"
	FailureLuarmorRefused = "luarmor_refused"
	// FailureTooManyUnits: the order asks for more units than
	// MAX_UNITS_PER_ORDER or a price's max_quantity; an operator decides.
	FailureTooManyUnits = "too_many_units"
	// FailureBadQuantity: a line item with a quantity of zero or less.
	FailureBadQuantity = "bad_quantity"
	// FailureLivemodeMismatch: a live event against a test Stripe key, or
	// the other way round.
	FailureLivemodeMismatch = "livemode_mismatch"
	// FailureSessionUnknown: an event reported the session paid, but
	// Stripe's API does not know it (another account, or another mode).
	FailureSessionUnknown = "session_unknown"
)

// Retryable reports whether an operator's retry may fulfil an order that
// failed with code: everything but a failed payment, which needs a new one.
func Retryable(code string) bool { return code != FailurePaymentFailed }

// Order is one Checkout Session and the keys delivered for it.
type Order struct {
	// ID is the order's number: it names the order in job arguments,
	// signed links and the audit log, and grants nothing by itself.
	ID                int64
	CheckoutSessionID string
	// AccessGeneration is the generation of the order's signed links: a
	// link of another generation grants nothing (see Access).
	AccessGeneration int64
	// SessionAccessRevoked: support rotated the order's access, so its
	// Checkout Session ID no longer opens it.
	SessionAccessRevoked bool
	Status               Status
	Mode                 string // "payment" or "subscription"
	PaymentStatus        string // Stripe's: "paid", "unpaid", "no_payment_required"
	SessionStatus        string // Stripe's: "open", "complete", "expired"
	CustomerEmail        string
	CustomerID           string
	PaymentIntentID      string
	SubscriptionID       string
	InvoiceID            string
	// DiscordID is the Discord ID typed at checkout: a claim, not proof.
	DiscordID string
	// Discord is the Discord account the buyer verified from the order
	// page (Discord's OAuth2), nil when none was: unlike DiscordID, proof.
	Discord     *VerifiedDiscord
	ItemsLoaded bool
	// PaidThrough is the end of the latest paid subscription period (unix
	// seconds), nil before the first renewal invoice.
	PaidThrough        *int64
	SubscriptionStatus string // "canceled" once the subscription ended
	RevocationID       int64  // the dispute or refund that revoked the order
	FailureCode        string
	FailureReason      string
	CreatedAt          time.Time
	UpdatedAt          time.Time
	Keys               []Key
	// Purchase is what the buyer paid and for what; unknown for orders
	// recorded before it was kept.
	Purchase
	// Standing is what the buyer's state needs of the order (OrderBuyerState).
	Standing OrderStanding
}

// Key is one purchased unit and, once delivered, its Luarmor key.
type Key struct {
	ID                int64
	CheckoutSessionID string
	// AccessGeneration is the generation of the order's signed links: a
	// link of another generation grants nothing (see Access).
	AccessGeneration int64
	// SessionAccessRevoked: support rotated the order's access, so its
	// Checkout Session ID no longer opens it.
	SessionAccessRevoked bool
	LineItemID           string
	Unit                 int
	PriceID              string
	ProjectID            string
	KeyDays              int
	Reference            string // unique tag in the Luarmor note
	Status               KeyStatus
	UserKey              string
	AuthExpire           *int64 // unix seconds; nil while the key_days timer has not started; -1 never
	CreateAttempts       int
	LastError            string
	DeliveredAt          *time.Time
	// ExtendedExisting: the buyer's Discord ID already had a key in the
	// project, and this purchase extended it instead of creating another.
	ExtendedExisting bool
	ExtendTarget     *int64 // the expiry that extension sets, computed once
	// Recurring: the unit's price is recurring, so the key follows its
	// subscription (absolute expiry, renewals, seats, cancellation).
	Recurring     bool
	ExpireTarget  *int64 // the absolute expiry the key must have; nil: key_days rules
	ExpireApplied *int64 // the target last set in Luarmor
	Ending        bool   // left the subscription: runs out at ExpireTarget
	Suspended     bool   // to be blacklisted while the subscription is past_due
	// ExtendFrom is the extended key's expiry without this purchase,
	// computed with ExtendTarget: a revocation never sets the key below it.
	ExtendFrom *int64
	// RevertTarget is the expiry a revocation of this purchase sets on the
	// extended key, computed once.
	RevertTarget *int64
	DiscordLink  DiscordLink
	// DiscordVerified: the key carries the Discord account the buyer
	// verified for the order (Order.Discord).
	DiscordVerified bool
	HWIDReset       HWIDReset // the latest self-service HWID reset
	// SupportBan: support banned or revoked the key. No automatic unban (a
	// dispute won, a refund cancelled) lifts it; only support's unban.
	SupportBan bool
	// Standing is what the ledger and support's records say of the key,
	// for its buyer's state (KeyBuyerState).
	Standing KeyStanding
}

// VerifiedDiscord is a Discord account a buyer proved they hold, by
// signing in with Discord from the order page, and what became of it.
//
// Luarmor links an account to one key per project, so the account goes to
// the order's first usable key in each project; of several orders on which
// one account was verified, the newest holds it in a project. A Discord ID
// typed at checkout never overrides it: once an order has a verified
// account, its typed ID is no longer sent to Luarmor, and the verified
// account replaces a link the typed ID made, on the order's own key or on
// another key this service made whose link came from a typed ID.
type VerifiedDiscord struct {
	ID       string // the account's snowflake
	Username string // for the buyer's eyes
	// Verification numbers the verification: each is applied once.
	Verification int64
	VerifiedAt   time.Time
	Status       DiscordVerification
}

// DiscordVerification is what became of a verified Discord account on an
// order's keys.
type DiscordVerification string

const (
	// DiscordLinking: a key of the order is still to be linked (its writer
	// has not run yet, or the key is still being made).
	DiscordLinking DiscordVerification = "linking"
	// DiscordVerifiedLinked: the order's keys carry the account.
	DiscordVerifiedLinked DiscordVerification = "linked"
	// DiscordVerifiedInUse: another key of the project holds the account,
	// one this service may not take it from (a key it did not make, or
	// one whose link was not made from a typed ID), or a newer order of
	// the same account took it.
	DiscordVerifiedInUse DiscordVerification = "in_use"
	// DiscordVerifiedInvalid: Luarmor refused the account's ID.
	DiscordVerifiedInvalid DiscordVerification = "invalid"
	// DiscordNoKeys: the order has no usable key to link.
	DiscordNoKeys DiscordVerification = "no_keys"
)

// Delivered reports whether Luarmor has created the key.
func (k Key) Delivered() bool { return k.UserKey != "" }

// ExpiryKind is how a key ends: at AuthExpire, KeyDays after its first
// run, or never.
type ExpiryKind int

const (
	ExpiresAt ExpiryKind = iota
	ExpiresAfterFirstUse
	NeverExpires
)

// Expiry tells how the key ends.
func (k Key) Expiry() ExpiryKind {
	switch {
	case k.AuthExpire != nil && *k.AuthExpire == -1, k.AuthExpire == nil && k.KeyDays == 0:
		return NeverExpires
	case k.AuthExpire == nil:
		return ExpiresAfterFirstUse
	}
	return ExpiresAt
}

// Paid reports whether a Checkout Session's payment_status allows
// fulfilment: Stripe's guide fulfils anything that is not "unpaid".
func Paid(paymentStatus string) bool {
	return paymentStatus == "paid" || paymentStatus == "no_payment_required"
}

// Fulfillable reports whether a Checkout Session may be fulfilled: it is
// complete (an open session can report no_payment_required before the buyer
// finished, an expired one never paid) and its payment settled.
func Fulfillable(sessionStatus, paymentStatus string) bool {
	return sessionStatus == "complete" && Paid(paymentStatus)
}

// Error codes, mapped to HTTP statuses in one table by the HTTP adapter.
const (
	ENOTFOUND     = "not_found"
	EINVALID      = "invalid"
	EUNAUTHORIZED = "unauthorized"
	ETOOMANY      = "too_many_requests"
	EUNAVAILABLE  = "unavailable"
	EINTERNAL     = "internal"
	// ERATELIMITED: one client asked too often; the answer's Retry-After
	// says when to ask again.
	ERATELIMITED = "rate_limited"
	// EMAILNOTCONFIGURED: the request needs keys by email (find my keys)
	// and the service has no mail settings. Configuration, not an outage:
	// asking again changes nothing until the operator sets them.
	EMAILNOTCONFIGURED = "mail_not_configured"
)

// Error is a failure that the caller of a domain operation can act on.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf returns an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of an *Error in err's chain, or EINTERNAL.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of an *Error in err's chain, or a generic
// message that leaks nothing internal.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// Action is what a revocation does to a key (REFUND_ACTION for refunds).
type Action string

const (
	ActionBlacklist Action = "blacklist"
	ActionDelete    Action = "delete"
	ActionNone      Action = "none"
)

// Policy is what the shop decided about the key lifecycle after a sale.
type Policy struct {
	// RenewalGrace is added to a paid period's end (RENEWAL_GRACE).
	RenewalGrace time.Duration
	// DisputeBanReason is shown to a user whose key was blacklisted after
	// a dispute (DISPUTE_BAN_REASON).
	DisputeBanReason string
	// UnbanWhenDisputeWon lifts dispute bans when the shop wins
	// (DISPUTE_WON_ACTION=unban, the default; keep leaves them).
	UnbanWhenDisputeWon bool
	// RefundAction is ActionBlacklist, ActionDelete or ActionNone
	// (REFUND_ACTION).
	RefundAction Action
	// RefundBanReason is shown to a user blacklisted after a refund.
	RefundBanReason string
	// SuspendWhenPastDue blacklists the keys of a past_due subscription
	// until it is paid (PAST_DUE_ACTION=suspend); by default (keep) they
	// keep access until Stripe gives up.
	SuspendWhenPastDue bool
	// PastDueKeepFor bounds PAST_DUE_ACTION=keep: access kept while a
	// renewal is collected ends at most this long after the paid period
	// (PAST_DUE_KEEP_FOR).
	PastDueKeepFor time.Duration

	// SuspendOnInquiry blacklists the keys of a payment under a dispute
	// inquiry until it closes (DISPUTE_INQUIRY_ACTION=suspend); false
	// records and logs inquiries only (none, the default).
	SuspendOnInquiry bool
	// RefundRevokePercent is the share of a charge's captured amount, 1 to
	// 100, that its refunds must reach to revoke its keys
	// (REFUND_REVOKE_PERCENT).
	RefundRevokePercent int
	// RevokeOnEarlyFraudWarning revokes a payment's keys when Stripe warns
	// of fraud (EARLY_FRAUD_WARNING_ACTION=revoke; none, the default, logs).
	RevokeOnEarlyFraudWarning bool
	// CancelSubscriptionOnRevoke cancels in Stripe the subscription of a
	// payment revoked after a dispute or a refund
	// (CANCEL_SUBSCRIPTION_ON_REVOKE).
	CancelSubscriptionOnRevoke bool
}

// FraudWarningBanReason is shown to a user blacklisted after an early
// fraud warning.
const FraudWarningBanReason = "Payment flagged as fraudulent"

// UnbanOnLift reports whether lifting a revocation lifts its bans: a
// suspension for an inquiry always is, a won dispute per
// DISPUTE_WON_ACTION.
func (p Policy) UnbanOnLift(inquiry bool) bool { return inquiry || p.UnbanWhenDisputeWon }

// RefundRevokes reports whether refunds totalling refunded of a charge of
// which captured was captured (Stripe's amount_captured) reach
// RefundRevokePercent (0 means 100) of what was captured. A charge that
// captured nothing took no money, so no refund of it revokes.
func (p Policy) RefundRevokes(refunded, captured int64) bool {
	percent := int64(p.RefundRevokePercent)
	if percent <= 0 {
		percent = 100
	}
	return captured > 0 && refunded*100 >= percent*captured
}

// DefaultPolicy is the policy when nothing is configured.
func DefaultPolicy() Policy {
	return Policy{
		RenewalGrace:        24 * time.Hour,
		DisputeBanReason:    "Payment disputed",
		UnbanWhenDisputeWon: true,
		RefundAction:        ActionBlacklist,
		RefundBanReason:     "Payment refunded",
		RefundRevokePercent: 100,
		PastDueKeepFor:      DefaultPastDueKeepFor,
		// A banned subscriber is never charged again.
		CancelSubscriptionOnRevoke: true,
	}
}

// DefaultPastDueKeepFor is PAST_DUE_KEEP_FOR's default: Stripe's default
// smart retries run for up to two weeks.
const DefaultPastDueKeepFor = 14 * 24 * time.Hour
