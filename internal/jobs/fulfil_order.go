package jobs

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/logging"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi"
)

// FulfilOrderArgs fulfils a Checkout Session: it reads the session and its
// line items from Stripe and records one key to create per purchased unit.
// It names the order by number: a Checkout Session ID reads the order's
// keys, and arguments are shown in the River UI and kept as long as jobs
// are.
type FulfilOrderArgs struct {
	// OrderID is the order's number; one fulfilment of it is in flight.
	OrderID int64 `json:"order_id" river:"unique"`
	// OrderRef is logging.OrderRef of the order, for whoever reads the
	// job beside the logs.
	OrderRef string `json:"order_ref,omitempty"`
	// CheckoutSessionID is the form of jobs queued before orders had
	// numbers (a rolling deploy). Never set now.
	CheckoutSessionID string `json:"checkout_session_id,omitempty"`
}

// fulfilOrder is the fulfilment job of o.
func fulfilOrder(o *order.Order) FulfilOrderArgs {
	return FulfilOrderArgs{OrderID: o.ID, OrderRef: logging.OrderRef(o.CheckoutSessionID)}
}

// sessionOf returns the Checkout Session ID of the order a job names, by
// number, or by the session itself in a job of the old form.
func sessionOf(ctx context.Context, db postgres.DB, orderID int64, oldSessionID string) (string, error) {
	if orderID == 0 && oldSessionID != "" {
		return oldSessionID, nil
	}
	id, err := postgres.SessionIDOfOrder(ctx, db, orderID)
	if order.ErrorCode(err) == order.ENOTFOUND {
		return "", river.JobCancel(fmt.Errorf("order number %d does not exist: nothing to do", orderID))
	}
	return id, err
}

func (FulfilOrderArgs) Kind() string { return "fulfil_order" }

func (FulfilOrderArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		Queue:      QueueDefault,
		UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight},
	}
}

// FulfilOrderWorker works FulfilOrderArgs.
type FulfilOrderWorker struct {
	river.WorkerDefaults[FulfilOrderArgs]
	Deps
}

func (w *FulfilOrderWorker) Work(ctx context.Context, job *river.Job[FulfilOrderArgs]) error {
	id, err := sessionOf(ctx, w.Pool, job.Args.OrderID, job.Args.CheckoutSessionID)
	if err != nil {
		return err
	}
	read, err := w.readSession(ctx, id)
	if stripeapi.IsNotFound(err) {
		return w.sessionUnknown(ctx, job, id, err)
	}
	if err != nil {
		return err
	}
	var sales stockSales
	err = complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		if _, err := w.fulfil(ctx, tx, read, &sales); err != nil {
			return err
		}
		return sales.finish(ctx, tx, w.Deps)
	})
	if err != nil {
		return err
	}
	sales.committed()
	return nil
}

// sessionRead is what a paid session's fulfilment reads from Stripe.
type sessionRead struct {
	sess  *stripe.CheckoutSession
	items []*stripe.LineItem // its line items, read when it is fulfillable
	paid  *paidPeriod        // what a subscription's checkout paid for
}

// readSession reads Checkout Session id for its fulfilment, in one request
// (with the charge of its receipt, for the buyer's page, its line items
// and its subscription; see stripeapi.CheckoutSessionToFulfil), and the
// subscription in a second when it did not come expanded.
func (d Deps) readSession(ctx context.Context, id string) (*sessionRead, error) {
	sess, items, err := d.Stripe.CheckoutSessionToFulfil(ctx, id)
	if err != nil {
		return nil, err
	}
	r := &sessionRead{sess: sess}
	details := SessionDetails(sess)
	if !order.Fulfillable(details.SessionStatus, details.PaymentStatus) {
		return r, nil
	}
	r.items = items
	if details.SubscriptionID != "" {
		// A subscription's keys get what was paid for, not key_days.
		sub := sess.Subscription
		if !stripeapi.SubscriptionExpanded(sess) {
			if sub, err = d.Stripe.Subscription(ctx, details.SubscriptionID); err != nil {
				return nil, stripeFailure("subscription "+details.SubscriptionID, err)
			}
		}
		r.paid = d.firstPeriod(sub)
	}
	return r, nil
}

// fulfil records, in tx, the order of a session read from Stripe (as
// recordSession does: a revocation that came first applies) and, once it
// is paid, its units, and starts them (sellOrQueueUnits): the first are
// delivered from stock in tx when the stock has keys for them, recorded in
// sales for the caller to finish before tx commits. It returns the order
// as recorded, locked by tx.
func (w *FulfilOrderWorker) fulfil(ctx context.Context, tx pgx.Tx, r *sessionRead, sales *stockSales) (*order.Order, error) {
	// Units and the grants of their payment are recorded under the
	// payment's lock (recordSession takes it), like the renewals and
	// revocations that find them; the order's row is locked by its upsert.
	details := SessionDetails(r.sess)
	o, _, err := recordSession(ctx, tx, details)
	if err != nil {
		return nil, err
	}
	switch {
	case !order.Fulfillable(details.SessionStatus, details.PaymentStatus):
		// Not complete and paid when read, whatever the order says now:
		// the read has no line items to expand (readSession loads them
		// only for a paid session). The async_payment_succeeded event (or
		// a visit to the success page) that recorded the payment starts
		// fulfilment again with a read that has them.
		w.Logger.InfoContext(ctx, "order awaits payment",
			"session_status", r.sess.Status, "payment_status", r.sess.PaymentStatus)
	case o.Status == order.StatusRevoked:
		// The payment was taken back before the keys were made: none is.
		w.Logger.InfoContext(ctx, "order revoked before fulfilment; no key created")
	case o.Status == order.StatusPending:
		// Not expanded yet, or expanded with units still to start.
		return o, w.expand(ctx, tx, o, r.items, r.paid, r.sess.Created, sales)
	default:
		// Fulfilled already, or failed and waiting for an operator.
	}
	return o, nil
}

// expand records the units of a paid order (once) and starts its first
// units. In an order already expanded each unit keeps the project and
// key_days it was sold with, except the units Luarmor refused for their
// project: those take the catalog's current project and key_days, so the
// retry after a catalog fix uses the fix.
func (w *FulfilOrderWorker) expand(ctx context.Context, tx pgx.Tx, o *order.Order, items []*stripe.LineItem, paid *paidPeriod, paidAt int64, sales *stockSales) error {
	id := o.CheckoutSessionID
	if !o.ItemsLoaded {
		// What was bought, as sold, whether or not it can be fulfilled:
		// a failed order's page still says what it was for.
		if err := postgres.RecordLines(ctx, tx, id, w.paidLines(items)); err != nil {
			return err
		}
		lines, failure := w.plan(items, paid)
		for i := range lines {
			lines[i].PaidAt, lines[i].Invoice = paidAt, o.InvoiceID
		}
		if failure != nil {
			// The job completes with the failure recorded (in one
			// commit), so a retry requested right after sees no job in
			// flight.
			w.Logger.ErrorContext(ctx, "order cannot be fulfilled", "code", failure.code, "reason", failure.reason)
			return failOrder(ctx, tx, w.Deps, id, failure.code, failure.reason)
		}
		if err := postgres.AddUnits(ctx, tx, id, lines); err != nil {
			return err
		}
		if o.SubscriptionID != "" {
			// Renewals paid before the checkout was fulfilled.
			if _, err := postgres.GrantRenewals(ctx, tx, o.SubscriptionID); err != nil {
				return err
			}
		}
	} else {
		prices, err := postgres.PricesToReplan(ctx, tx, id)
		if err != nil {
			return err
		}
		var missing []string
		for _, p := range prices {
			product, ok := w.Catalog.Lookup(p)
			if !ok {
				missing = append(missing, p)
				continue
			}
			if err := postgres.ReplanUnits(ctx, tx, id, p, product.ProjectID, product.KeyDays); err != nil {
				return err
			}
		}
		if len(missing) > 0 {
			f := unknownPrices(missing)
			w.Logger.ErrorContext(ctx, "order cannot be fulfilled", "code", f.code, "reason", f.reason)
			return failOrder(ctx, tx, w.Deps, id, f.code, f.reason)
		}
	}
	if paid != nil {
		if err := postgres.RecordSubscriptionState(ctx, tx, o.SubscriptionID, paid.status, paid.end); err != nil {
			return err
		}
		// A seat or price changed between the checkout and now is only
		// in the subscription: reconcile the units with it.
		if err := insertMany(ctx, tx, SyncSubscriptionArgs{SubscriptionID: o.SubscriptionID}); err != nil {
			return err
		}
	}
	sold := sales.count()
	if err := w.sellOrQueueUnits(ctx, tx, o, sales); err != nil {
		return err
	}
	w.Logger.InfoContext(ctx, "order expanded", "sold_from_stock", sales.count()-sold)
	return nil
}

// sessionUnknown handles a session Stripe's API does not know. An order an
// event reported paid then fails with the reason (a key of another account
// or mode, most likely), instead of waiting forever; otherwise (a forged
// success-page ID cannot get here: those are confirmed first) the job ends.
func (w *FulfilOrderWorker) sessionUnknown(ctx context.Context, job *river.Job[FulfilOrderArgs], id string, cause error) error {
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		o, err := postgres.LockOrder(ctx, tx, id)
		if order.ErrorCode(err) == order.ENOTFOUND {
			return river.JobCancel(fmt.Errorf("checkout session does not exist in this Stripe account: %w", cause))
		}
		if err != nil {
			return err
		}
		reason := "Stripe's API does not know this checkout session although an event reported it: " +
			"check that STRIPE_API_KEY belongs to the account (and live or test mode) of the webhook, then retry the order"
		if err := failOrder(ctx, tx, w.Deps, o.CheckoutSessionID, order.FailureSessionUnknown, reason); err != nil {
			return err
		}
		w.Logger.ErrorContext(ctx, "order cannot be fulfilled", "code", order.FailureSessionUnknown, "reason", reason)
		return nil
	})
}

// planFailure is why an order's line items cannot be turned into units.
type planFailure struct{ code, reason string }

// maxNamedPrices bounds the prices an unknown-price failure names: an
// order of thousands of unknown prices must not write a reason of tens of
// thousands of characters, in the log at every restart and in the order.
const maxNamedPrices = 10

func unknownPrices(prices []string) *planFailure {
	named := strings.Join(prices[:min(len(prices), maxNamedPrices)], ", ")
	if len(prices) > maxNamedPrices {
		named += fmt.Sprintf(" and %d more", len(prices)-maxNamedPrices)
	}
	return &planFailure{order.FailureUnknownPrice, logging.Truncate(fmt.Sprintf(
		"price %s is not in the catalog: add it to CATALOG_FILE and restart; the order is then fulfilled again",
		named), logging.MaxReasonLength)}
}

// plan turns line items into lines of units, checking every bound before
// anything is allocated: a quantity of zero or less, a price's
// max_quantity, the order's MaxUnitsPerOrder, prices missing from the
// catalog.
func (w *FulfilOrderWorker) plan(items []*stripe.LineItem, paid *paidPeriod) ([]order.Line, *planFailure) {
	var lines []order.Line
	missing := map[string]bool{}
	var total int64
	for _, it := range items {
		priceID := ""
		if it.Price != nil {
			priceID = it.Price.ID
		}
		if it.Quantity <= 0 {
			return nil, &planFailure{order.FailureBadQuantity, fmt.Sprintf(
				"line item %s of price %s has quantity %d: an operator must decide what was bought", it.ID, priceID, it.Quantity)}
		}
		product, ok := w.Catalog.Lookup(priceID)
		if !ok {
			if priceID == "" {
				priceID = "(line item " + it.ID + " without a price)"
			}
			missing[priceID] = true
			continue
		}
		if product.MaxQuantity > 0 && it.Quantity > int64(product.MaxQuantity) {
			return nil, &planFailure{order.FailureTooManyUnits, fmt.Sprintf(
				"line item %s buys %d units of price %s, above its max_quantity of %d: an operator must decide (raise max_quantity and retry, or refund)",
				it.ID, it.Quantity, priceID, product.MaxQuantity)}
		}
		total += it.Quantity // each is bounded by the check below before it can overflow
		if total > int64(w.maxUnits()) {
			return nil, &planFailure{order.FailureTooManyUnits, fmt.Sprintf(
				"the order buys more than MAX_UNITS_PER_ORDER (%d) units: an operator must decide (raise the limit and retry, or refund)",
				w.maxUnits())}
		}
		line := order.Line{LineItemID: it.ID, Quantity: int(it.Quantity), PriceID: priceID,
			ProjectID: product.ProjectID, KeyDays: product.KeyDays}
		if it.Price != nil && it.Price.Recurring != nil && paid != nil {
			line.Recurring, line.ExpireTarget = true, &paid.expiresAt
			line.Period = order.Period{Start: paid.start, End: paid.end}
		}
		lines = append(lines, line)
	}
	if len(missing) > 0 {
		unknown := make([]string, 0, len(missing))
		for p := range missing {
			unknown = append(unknown, p)
		}
		sort.Strings(unknown)
		return nil, unknownPrices(unknown)
	}
	return lines, nil
}

func (w *FulfilOrderWorker) maxUnits() int {
	if w.MaxUnitsPerOrder > 0 {
		return w.MaxUnitsPerOrder
	}
	return DefaultMaxUnitsPerOrder
}

// DefaultMaxUnitsPerOrder is MAX_UNITS_PER_ORDER's default.
const DefaultMaxUnitsPerOrder = 100

// unitsQueuedPerOrder is how many units of one order wait in the deliver
// queue at a time (see postgres.QueueUnits): enough to keep an order
// moving while other orders' units interleave with its own.
const unitsQueuedPerOrder = 2

// queueUnits queues create_key jobs for the next units of a pending order.
// The caller holds the order's lock.
func queueUnits(ctx context.Context, tx pgx.Tx, o *order.Order) error {
	if o.Status != order.StatusPending {
		return nil
	}
	ids, err := postgres.QueueUnits(ctx, tx, o.CheckoutSessionID, unitsQueuedPerOrder)
	if err != nil {
		return err
	}
	return insertCreateKeyJobs(ctx, tx, ids)
}

// sellOrQueueUnits starts the next units of a pending order whose lock tx
// holds, as queueUnits does, except that those of them the stock can serve
// are delivered here, in tx, from stock: the commit that records an order's
// units gives its buyer the keys, with no job and no Luarmor call between
// the payment and the key. Only the units of the order's turn in the fair
// queue (unitsQueuedPerOrder) are sold so: an order of many units takes no
// more of the stock ahead of the orders paid after it than its two units
// in the deliver queue did; the rest, and the units the stock cannot
// serve, are queued for create_key (which sells from stock too, in their
// turn). The sales are recorded in sales, which the caller finishes last
// (stockSales.finish) before tx commits.
func (d Deps) sellOrQueueUnits(ctx context.Context, tx pgx.Tx, o *order.Order, sales *stockSales) error {
	if o.Status != order.StatusPending || !d.Catalog.StocksAny() {
		return queueUnits(ctx, tx, o)
	}
	ids, err := postgres.QueueUnits(ctx, tx, o.CheckoutSessionID, unitsQueuedPerOrder)
	if err != nil {
		return err
	}
	sold := 0
	for _, id := range ids {
		k, err := postgres.GetKey(ctx, tx, id)
		if err != nil {
			return err
		}
		if !stockServes(d.Catalog, k) {
			continue
		}
		price, delivered, err := takeFromStock(ctx, tx, k)
		if err != nil {
			return err
		}
		if price == "" {
			continue // none left of its (project_id, key_days)
		}
		if err := recordDelivered(ctx, tx, k, delivered); err != nil {
			return err
		}
		counted, err := d.countDelivered(ctx, tx, k, true)
		if err != nil {
			return err
		}
		sales.add(price, counted)
		sold++
		d.Logger.InfoContext(ctx, "key delivered from stock", "order_key_id", k.ID, "user_key", logging.MaskKey(delivered.UserKey),
			"project_id", k.ProjectID, "key_days", k.KeyDays)
	}
	if sold == 0 {
		return insertCreateKeyJobs(ctx, tx, ids)
	}
	// The units not sold are queued first (QueueUnits takes those already
	// marked queued first), then the order's next ones in the sold ones'
	// place; an order the sales completed queues none. When QueueUnits
	// returned fewer units than it may, they were all the order's pending
	// units: every one sold leaves none to queue, nor an order to read
	// again (a one- or two-unit order, the common case).
	if sold < len(ids) || len(ids) == unitsQueuedPerOrder {
		now, err := postgres.GetOrderRow(ctx, tx, o.CheckoutSessionID)
		if err != nil {
			return err
		}
		if err := queueUnits(ctx, tx, now); err != nil {
			return err
		}
	}
	return orderDelivered(ctx, tx, d, o.CheckoutSessionID)
}

func insertCreateKeyJobs(ctx context.Context, tx pgx.Tx, ids []int64) error {
	args := make([]river.JobArgs, len(ids))
	for i, id := range ids {
		args[i] = CreateKeyArgs{OrderKeyID: id}
	}
	return insertMany(ctx, tx, args...)
}

// SessionDetails extracts what the order records from a Checkout Session.
func SessionDetails(s *stripe.CheckoutSession) order.SessionDetails {
	d := order.SessionDetails{
		CheckoutSessionID: s.ID,
		Mode:              string(s.Mode),
		PaymentStatus:     string(s.PaymentStatus),
		SessionStatus:     string(s.Status),
		CustomerEmail:     s.CustomerEmail,
	}
	if s.Currency != "" {
		total := s.AmountTotal
		d.AmountTotal, d.Currency = &total, strings.ToLower(string(s.Currency))
	}
	d.PlacedAt = s.Created
	d.ReceiptURL = stripeapi.ReceiptURL(s)
	if s.CustomerDetails != nil && s.CustomerDetails.Email != "" {
		d.CustomerEmail = s.CustomerDetails.Email
	}
	if s.Customer != nil {
		d.CustomerID = s.Customer.ID
	}
	if s.PaymentIntent != nil {
		d.PaymentIntentID = s.PaymentIntent.ID
	}
	if s.Subscription != nil {
		d.SubscriptionID = s.Subscription.ID
	}
	if s.Invoice != nil {
		d.InvoiceID = s.Invoice.ID
	}
	for _, f := range s.CustomFields {
		if f != nil && f.Key == "discord_id" && f.Text != nil {
			d.DiscordID = strings.TrimSpace(f.Text.Value)
		}
	}
	return d
}

// RecordSession records a Checkout Session's order inside tx and, when it is
// paid and not yet expanded into keys, enqueues its fulfilment in the same
// transaction. Webhooks and the order API's success-page path both use it,
// so however often and in whatever order they arrive, fulfilment is the
// same idempotent job.
func RecordSession(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], d order.SessionDetails) (*order.Order, error) {
	o, fulfil, err := recordSession(ctx, tx, d)
	if err != nil || !fulfil {
		return o, err
	}
	if _, err := client.InsertTx(ctx, tx, fulfilOrder(o), nil); err != nil {
		return nil, fmt.Errorf("enqueueing fulfilment of %s: %w", logging.OrderRef(d.CheckoutSessionID), err)
	}
	return o, nil
}

// recordSession records a Checkout Session's order inside tx, as
// RecordSession does, and reports whether it is paid and not yet expanded
// into keys: to be fulfilled.
func recordSession(ctx context.Context, tx pgx.Tx, d order.SessionDetails) (*order.Order, bool, error) {
	// A dispute or refund may have arrived before the order: apply it now.
	if err := postgres.LockPayment(ctx, tx, d.PaymentIntentID, d.SubscriptionID); err != nil {
		return nil, false, err
	}
	o, err := postgres.UpsertOrder(ctx, tx, d)
	if err != nil {
		return nil, false, err
	}
	if o.Status != order.StatusRevoked {
		rev, err := postgres.ActiveRevocationFor(ctx, tx, o.CheckoutSessionID, o.PaymentIntentID, o.SubscriptionID, o.InvoiceID)
		if err != nil {
			return nil, false, err
		}
		if rev != nil {
			if err := postgres.RevokeOrder(ctx, tx, o.CheckoutSessionID, rev.ID); err != nil {
				return nil, false, err
			}
			o.Status, o.RevocationID = order.StatusRevoked, rev.ID
		}
	}
	return o, order.Fulfillable(o.SessionStatus, o.PaymentStatus) && !o.ItemsLoaded && o.Status == order.StatusPending, nil
}
