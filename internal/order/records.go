package order

// The records below are what the workflow passes between its steps; the
// adapters (Stripe's reads, PostgreSQL, the jobs) fill and store them.

// SessionDetails is what a Checkout Session tells about its order.
type SessionDetails struct {
	CheckoutSessionID string
	Mode              string
	PaymentStatus     string
	SessionStatus     string
	CustomerEmail     string
	CustomerID        string
	PaymentIntentID   string
	SubscriptionID    string
	InvoiceID         string
	DiscordID         string
	// AmountTotal is what the session charged, in Currency's minor unit;
	// nil when the session did not say (Currency empty).
	AmountTotal *int64
	Currency    string
	// PlacedAt is the session's creation (unix seconds); 0 unknown.
	PlacedAt int64
	// ReceiptURL is Stripe's receipt of the payment, when the session was
	// read with its payment's charge; "" otherwise.
	ReceiptURL string
}

// Line is one paid line item, planned against the catalog: Quantity units
// of PriceID, each a key of ProjectID with KeyDays, or, for a recurring
// price, a key that follows its subscription and expires at ExpireTarget.
type Line struct {
	LineItemID   string
	Quantity     int
	PriceID      string
	ProjectID    string
	KeyDays      int
	Recurring    bool
	ExpireTarget *int64
	// PaidAt is when the checkout was paid (Stripe's time, unix seconds):
	// a one-time unit's days count from then at the earliest.
	PaidAt int64
	// Period is the subscription period the checkout paid for (a
	// recurring line), and Invoice the invoice that paid it.
	Period  Period
	Invoice string
}

// Period is a stretch of a subscription, unix seconds.
type Period struct {
	Start, End int64
}

// RenewalLine is one paid line of a subscription invoice: Quantity seats
// of PriceID paid for Period.
type RenewalLine struct {
	PriceID  string
	Quantity int
	Period   Period
}

// Renewal is one paid subscription invoice.
type Renewal struct {
	InvoiceID      string
	SubscriptionID string
	BillingReason  string
	PeriodEnd      int64
	ExpiresAt      int64 // PeriodEnd + grace: the absolute expiry every key gets
	Extends        bool
	// Lines are the seats and prices the invoice paid for, each a period
	// granted to that many of the subscription's units of the price.
	Lines []RenewalLine
}

// Revocation is a payment taken back: a dispute, a refund or an early
// fraud warning, recorded once per source and applied to every order of
// the payment, including orders recorded after it.
type Revocation struct {
	ID              int64
	Source          RevocationSource
	SourceID        string // dispute ID, charge ID or early fraud warning ID
	ChargeID        string
	PaymentIntentID string
	SubscriptionID  string
	// InvoiceID is the subscription invoice the charge paid, when it paid
	// one: a refund of it takes back that period only.
	InvoiceID string
	Action    Action
	Reason    string
	Status    RevocationStatus
	Resolved  bool // traced to its payment's orders
	Inquiry   bool // suspends keys for a dispute inquiry
}

// RevocationSource is what took a payment back.
type RevocationSource string

const (
	SourceDispute           RevocationSource = "dispute"
	SourceRefund            RevocationSource = "refund"
	SourceEarlyFraudWarning RevocationSource = "early_fraud_warning"
)

// RevocationStatus says whether a revocation holds: active until lifted
// (a dispute won, an inquiry closed).
type RevocationStatus string

const (
	RevocationActive RevocationStatus = "active"
	RevocationLifted RevocationStatus = "lifted"
)
