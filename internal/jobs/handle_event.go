package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/riverqueue/river"
	"github.com/stripe/stripe-go/v76"
	"golang.org/x/sync/errgroup"

	"fulfiller/internal/logging"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// HandleEventsArgs acts on recorded Stripe events. The webhook endpoint
// only verifies, records and enqueues (so it answers Stripe fast under any
// load), one job for the events it recorded together; what each event means
// for orders and keys happens here.
type HandleEventsArgs struct {
	EventIDs []string `json:"event_ids"`
}

func (HandleEventsArgs) Kind() string { return "handle_events" }

func (HandleEventsArgs) InsertOpts() river.InsertOpts {
	// Event IDs are deduplicated by the stripe_events table at intake.
	// A queue of their own: River notifies a queue of inserts at most once
	// per fetch cooldown, so the fulfilment an event enqueues a moment
	// later in the default queue is not left to the next poll.
	return river.InsertOpts{Queue: QueueEvents}
}

// HandleEventsWorker works HandleEventsArgs: every event's handler and the
// job's completion commit together, so a retry after any failure finds
// nothing half done.
type HandleEventsWorker struct {
	river.WorkerDefaults[HandleEventsArgs]
	Deps
}

// eventHandler acts on an event inside the transaction that completes its job.
type eventHandler struct {
	object string // Stripe object type data.object must have
	handle func(ctx context.Context, w *HandleEventsWorker, tx pgx.Tx, event stripe.Event) error
}

// eventHandlers maps the event types the service acts on to their handlers.
var eventHandlers = map[string]eventHandler{
	"checkout.session.completed":               {"checkout.session", checkoutPaid},
	"checkout.session.async_payment_succeeded": {"checkout.session", checkoutPaid},
	"checkout.session.async_payment_failed":    {"checkout.session", checkoutFailed},
	"invoice.paid":                             {"invoice", invoicePaid},
	"charge.dispute.created":                   {"dispute", disputeChanged},
	"charge.dispute.closed":                    {"dispute", disputeChanged},
	"charge.refunded":                          {"charge", chargeRefunded},
	"charge.refund.updated":                    {"refund", refundUpdated},
	"customer.subscription.deleted":            {"subscription", subscriptionDeleted},
	"customer.subscription.updated":            {"subscription", subscriptionChanged},
	"charge.dispute.updated":                   {"dispute", disputeChanged},
	"radar.early_fraud_warning.created":        {"radar.early_fraud_warning", earlyFraudWarning},
	"invoice.payment_failed":                   {"invoice", invoicePaymentFailed},
	"customer.subscription.trial_will_end":     {"subscription", trialWillEnd},
}

// HandledObject reports whether the service acts on events of a type, and
// the Stripe object type their data.object must have.
func HandledObject(eventType string) (string, bool) {
	h, ok := eventHandlers[eventType]
	return h.object, ok
}

// HandledTypes lists, sorted, the event types the service acts on: the
// types to subscribe a webhook endpoint to and to look for when reconciling.
func HandledTypes() []string {
	return slices.Sorted(maps.Keys(eventHandlers))
}

func (w *HandleEventsWorker) Work(ctx context.Context, job *river.Job[HandleEventsArgs]) error {
	// A paid checkout's order is fulfilled here, in the commit that
	// records it, from its session read beforehand (outside the
	// transaction, which holds no lock while Stripe answers).
	run := &eventsRun{events: map[string]postgres.Event{}}
	run.reads = w.readPaidSessions(ctx, job.Args.EventIDs, run.events)
	err := complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		for _, id := range job.Args.EventIDs {
			if err := w.handle(ctx, tx, id, run); err != nil {
				return err
			}
		}
		if err := postgres.MarkEventsHandled(ctx, tx, job.Args.EventIDs); err != nil {
			return err
		}
		return run.sales.finish(ctx, tx, w.Deps)
	})
	if err != nil {
		return err
	}
	run.sales.committed()
	return nil
}

// eventsRun is what one run of HandleEventsWorker carries from event to
// event: the events as recorded, the sessions read for fulfilment, and the
// sales from stock made.
type eventsRun struct {
	// events holds the events read before the transaction, by ID. What
	// intake recorded of an event (its type, mode and body) never changes,
	// and retention drops no body before its job completes, so the
	// transaction need not read them again.
	events map[string]postgres.Event
	reads  map[string]*sessionRead // by Checkout Session ID
	sales  stockSales
}

// takeRead returns the session read for fulfilment in this run and
// forgets it, so that the session is fulfilled from it once; nil when
// none was read, or it was taken.
func (r *eventsRun) takeRead(sessionID string) *sessionRead {
	if r == nil {
		return nil
	}
	read := r.reads[sessionID]
	delete(r.reads, sessionID)
	return read
}

type eventsRunKey struct{}

// eventsRunOf returns the run ctx belongs to, nil outside HandleEventsWorker.
func eventsRunOf(ctx context.Context) *eventsRun {
	r, _ := ctx.Value(eventsRunKey{}).(*eventsRun)
	return r
}

// paidSessionReads bounds the Stripe reads one run makes at once.
const paidSessionReads = 8

// readPaidSessions reads from Stripe, for fulfilment, the sessions of the
// paid checkouts among events whose orders are not expanded yet, a few at
// a time. A session it could not read is left out: its fulfilment is then
// queued as a job of its own (fulfil_order), which retries the read, so a
// Stripe failure never holds back the other events recorded with it.
func (w *HandleEventsWorker) readPaidSessions(ctx context.Context, eventIDs []string, events map[string]postgres.Event) map[string]*sessionRead {
	var ids []string
	for _, id := range eventIDs {
		if sessionID := w.paidSessionToFulfil(ctx, id, events); sessionID != "" && !slices.Contains(ids, sessionID) {
			ids = append(ids, sessionID)
		}
	}
	reads := make(map[string]*sessionRead, len(ids))
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(paidSessionReads)
	for _, id := range ids {
		g.Go(func() error {
			r, err := w.readSession(ctx, id)
			if err != nil {
				w.Logger.WarnContext(ctx, "paid checkout session could not be read from Stripe; its fulfilment is queued as a job that retries",
					"order_ref", logging.OrderRef(id), "error", err)
				return nil
			}
			mu.Lock()
			reads[id] = r
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	return reads
}

// paidSessionToFulfil returns the Checkout Session ID of event id when it
// reports a paid checkout whose order is not expanded yet, "" otherwise,
// and keeps the event read in events. Read before the run's transaction;
// the transaction decides again.
func (w *HandleEventsWorker) paidSessionToFulfil(ctx context.Context, id string, events map[string]postgres.Event) string {
	stored, err := postgres.GetEvent(ctx, w.Pool, id)
	if err == nil {
		events[id] = stored
	}
	if err != nil || (stored.Type != "checkout.session.completed" && stored.Type != "checkout.session.async_payment_succeeded") ||
		stored.Livemode != w.StripeLivemode {
		return ""
	}
	event, err := storedEvent(stored)
	if err != nil {
		return ""
	}
	s, err := decodeObject[stripe.CheckoutSession](event, "a checkout session")
	if err != nil || s.ID == "" || !order.Fulfillable(string(s.Status), string(s.PaymentStatus)) {
		return ""
	}
	o, err := postgres.GetOrderRow(ctx, w.Pool, s.ID)
	if err == nil && (o.ItemsLoaded || o.Status != order.StatusPending) {
		return ""
	}
	return s.ID
}

// handle acts on one event inside the job's transaction. It dispatches on
// the type recorded at intake, never on a second reading of the body: a
// body can be read differently by different parsers (duplicate keys, keys
// differing in case), and the recorded type is the one intake checked. An
// event the service cannot act on is logged and skipped: retrying would
// not help, and it must not hold back the events recorded with it.
func (w *HandleEventsWorker) handle(ctx context.Context, tx pgx.Tx, id string, run *eventsRun) error {
	stored, read := run.events[id]
	var err error
	if !read {
		stored, err = postgres.GetEvent(ctx, tx, id)
	}
	if order.ErrorCode(err) == order.ENOTFOUND {
		w.Logger.ErrorContext(ctx, "queued stripe event is not recorded", "event_id", id)
		return nil
	}
	if err != nil {
		return err
	}
	h, ok := eventHandlers[stored.Type]
	if !ok {
		return nil
	}
	if stored.Payload == nil {
		// Dropped by retention, which only drops handled events' bodies:
		// this job ran before (a completed job retried by hand).
		w.Logger.WarnContext(ctx, "stripe event was handled before and its body is no longer kept; skipped", "event_id", id, "type", stored.Type)
		return nil
	}
	event, err := storedEvent(stored)
	if err != nil {
		w.Logger.ErrorContext(ctx, "stored stripe event cannot be read; skipped", "event_id", id, "type", stored.Type, "error", err)
		return nil
	}
	// A savepoint keeps a skipped event's partial writes out of the
	// commit while the batch goes on.
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	sold := run.sales.count()
	mismatch, err := modeMismatch(ctx, w, sp, event)
	if err == nil && !mismatch {
		err = h.handle(context.WithValue(ctx, eventsRunKey{}, run), w, sp, event)
	}
	var bad *badObjectError
	if errors.As(err, &bad) || isDataException(err) {
		_ = sp.Rollback(ctx)
		run.sales.undo(sold)
		w.Logger.ErrorContext(ctx, "stripe event cannot be handled; skipped", "event_id", event.ID, "type", event.Type, "error", err)
		return nil
	}
	if err != nil {
		return err
	}
	return sp.Commit(ctx)
}

// isDataException reports whether PostgreSQL refused a value the event
// carries (SQLSTATE class 22: a NUL character, a number out of range): the
// same event would be refused on every retry.
func isDataException(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "22")
}

// EventObject returns data.object of a Stripe event body: the bytes the
// handlers decode their object from. Intake checks the same bytes before
// it records an event (EventData.ObjectOf).
func EventObject(payload []byte) (json.RawMessage, error) {
	var body struct {
		Data EventData `json:"data"`
	}
	if err := json.Unmarshal(payload, &body); err != nil {
		return nil, errors.New("body is not a JSON Stripe event")
	}
	return body.Data.ObjectOf()
}

// EventData is an event body's data member, decoded with the rest of the
// body: data.object is kept as it came.
type EventData struct {
	Object json.RawMessage `json:"object"`
}

// ObjectOf returns data.object, or why the event has none.
func (d EventData) ObjectOf() (json.RawMessage, error) {
	if len(d.Object) == 0 || string(d.Object) == "null" {
		return nil, errNoEventObject
	}
	return d.Object, nil
}

var errNoEventObject = errors.New("event has no data.object")

// storedEvent is the event the handlers see: what intake recorded (ID,
// type) and the object from the recorded body.
func storedEvent(e postgres.Event) (stripe.Event, error) {
	object, err := EventObject(e.Payload)
	if err != nil {
		return stripe.Event{}, err
	}
	return stripe.Event{
		ID: e.ID, Type: stripe.EventType(e.Type), APIVersion: e.APIVersion, Livemode: e.Livemode,
		Created: e.CreatedAt.Unix(), Data: &stripe.EventData{Raw: object},
	}, nil
}

// badObjectError is an event object the handler cannot read: retrying will not help.
type badObjectError struct{ msg string }

func (e *badObjectError) Error() string { return e.msg }

func decodeObject[T any](event stripe.Event, what string) (*T, error) {
	var v T
	if err := json.Unmarshal(event.Data.Raw, &v); err != nil {
		return nil, &badObjectError{fmt.Sprintf("event %s: data.object is not %s: %v", event.ID, what, err)}
	}
	return &v, nil
}

// checkoutPaid records the order and, once paid, enqueues its fulfilment.
func checkoutPaid(ctx context.Context, w *HandleEventsWorker, tx pgx.Tx, event stripe.Event) error {
	s, err := decodeObject[stripe.CheckoutSession](event, "a checkout session")
	if err != nil {
		return err
	}
	client, err := river.ClientFromContextSafely[pgx.Tx](ctx)
	if err != nil {
		return err
	}
	var o *order.Order
	run := eventsRunOf(ctx)
	if read := run.takeRead(s.ID); read != nil {
		// Read from Stripe for this run: recorded as read (newer than the
		// event, and the same object) and fulfilled here, without a job,
		// once: another event of the session in the run is recorded as
		// one without a read, and finds the order expanded.
		if o, err = (&FulfilOrderWorker{Deps: w.Deps}).fulfil(ctx, tx, read, &run.sales); err != nil {
			return err
		}
	} else if o, err = RecordSession(ctx, tx, client, SessionDetails(s)); err != nil {
		return err
	}
	w.Logger.InfoContext(ctx, "checkout recorded", "event_id", event.ID, "type", event.Type,
		"order_ref", logging.OrderRef(s.ID), "payment_status", s.PaymentStatus, "order_status", o.Status)
	return nil
}

// checkoutFailed marks an order whose delayed payment failed.
func checkoutFailed(ctx context.Context, w *HandleEventsWorker, tx pgx.Tx, event stripe.Event) error {
	s, err := decodeObject[stripe.CheckoutSession](event, "a checkout session")
	if err != nil {
		return err
	}
	if _, err := postgres.UpsertOrder(ctx, tx, SessionDetails(s)); err != nil {
		return err
	}
	w.Logger.InfoContext(ctx, "delayed payment failed; no key is delivered", "order_ref", logging.OrderRef(s.ID))
	return failOrder(ctx, tx, w.Deps, s.ID, order.FailurePaymentFailed, "the delayed payment failed")
}

// invoicePaid queues the renewal of a paid invoice. The renewal job reads
// the invoice and all its lines from Stripe in the service's API version
// (the event carries only the first page of lines, and later API versions
// moved the invoice's subscription), and ignores one-off invoices.
func invoicePaid(ctx context.Context, w *HandleEventsWorker, tx pgx.Tx, event stripe.Event) error {
	inv, err := decodeObject[stripe.Invoice](event, "an invoice")
	if err != nil {
		return err
	}
	return insertMany(ctx, tx, RenewSubscriptionArgs{InvoiceID: inv.ID})
}

func chargeID(c *stripe.Charge) string {
	if c == nil {
		return ""
	}
	return c.ID
}

func paymentIntentID(p *stripe.PaymentIntent) string {
	if p == nil {
		return ""
	}
	return p.ID
}

// subscriptionDeleted records the end of a subscription; its keys end at
// the end of the period paid for (see SyncSubscriptionWorker).
func subscriptionDeleted(ctx context.Context, w *HandleEventsWorker, tx pgx.Tx, event stripe.Event) error {
	sub, err := decodeObject[stripe.Subscription](event, "a subscription")
	if err != nil {
		return err
	}
	if err := postgres.EndSubscription(ctx, tx, sub.ID); err != nil {
		return err
	}
	return subscriptionChanged(ctx, w, tx, event)
}
