package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/order"
)

// Event is a verified Stripe event as stored (see RecordEvents). Type is
// what the service acts on; Payload is the body exactly as Stripe signed it,
// nil once retention dropped it (internal/retention: only after the event
// was handled).
type Event struct {
	ID         string
	Type       string
	APIVersion string
	Livemode   bool
	ObjectID   string // data.object.id; may be empty for a type the service does not handle
	CreatedAt  time.Time
	Handled    bool
	Payload    []byte
}

// GetEvent returns a recorded Stripe event, its body byte for byte.
func GetEvent(ctx context.Context, db DB, id string) (Event, error) {
	var e Event
	err := db.QueryRow(ctx, `
		SELECT id, type, api_version, livemode, object_id, created_at, handled, payload
		FROM stripe_events WHERE id = $1`, id).
		Scan(&e.ID, &e.Type, &e.APIVersion, &e.Livemode, &e.ObjectID, &e.CreatedAt, &e.Handled, &e.Payload)
	if errors.Is(err, pgx.ErrNoRows) {
		return Event{}, order.Errorf(order.ENOTFOUND, "no stripe event %s", id)
	}
	if err != nil {
		return Event{}, fmt.Errorf("reading stripe event %s: %w", id, err)
	}
	return e, nil
}

// EventPayload returns the body of a recorded Stripe event exactly as it
// was received.
func EventPayload(ctx context.Context, db DB, id string) ([]byte, error) {
	e, err := GetEvent(ctx, db, id)
	return e.Payload, err
}

// RecordEvents stores a batch of events in one statement and reports, per
// event, whether it is new. An ID stored before, or earlier in the batch,
// is not new: Stripe delivered it again.
func RecordEvents(ctx context.Context, tx pgx.Tx, events []Event) ([]bool, error) {
	n := len(events)
	ids, types, versions, objects := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	payloads := make([][]byte, n)
	livemodes, handled := make([]bool, n), make([]bool, n)
	created := make([]time.Time, n)
	for i, e := range events {
		ids[i], types[i], versions[i], objects[i], payloads[i] = e.ID, e.Type, e.APIVersion, e.ObjectID, e.Payload
		livemodes[i], handled[i], created[i] = e.Livemode, e.Handled, e.CreatedAt
	}
	// Rows are inserted in ID order, so two batches holding the same events
	// (Stripe delivering one twice at once) take their locks alike and never
	// deadlock.
	rows, err := tx.Query(ctx, `
		INSERT INTO stripe_events (id, type, api_version, livemode, object_id, created_at, handled, payload)
		SELECT u.id, u.type, u.api_version, u.livemode, u.object_id, u.created_at, u.handled, u.payload
		FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::text[], $6::timestamptz[], $7::bool[], $8::bytea[])
		     AS u(id, type, api_version, livemode, object_id, created_at, handled, payload)
		ORDER BY u.id
		ON CONFLICT (id) DO NOTHING
		RETURNING id`, ids, types, versions, livemodes, objects, created, handled, payloads)
	if err != nil {
		return nil, fmt.Errorf("recording %d stripe events: %w", n, err)
	}
	inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("recording %d stripe events: %w", n, err)
	}
	fresh := make(map[string]bool, len(inserted))
	for _, id := range inserted {
		fresh[id] = true
	}
	isNew := make([]bool, n)
	for i, id := range ids {
		isNew[i] = fresh[id]
		delete(fresh, id) // a second copy in the batch is a duplicate
	}
	return isNew, nil
}

// MarkEventsHandled records, in the transaction that completes their
// handle_events job, that the events no longer wait for it: from then on
// retention may drop their bodies.
func MarkEventsHandled(ctx context.Context, tx pgx.Tx, ids []string) error {
	if _, err := tx.Exec(ctx, `UPDATE stripe_events SET awaiting_handler = false WHERE id = ANY($1) AND awaiting_handler`, ids); err != nil {
		return fmt.Errorf("recording %d stripe events as handled: %w", len(ids), err)
	}
	return nil
}

var checkoutEventAwaitingSQL = lookup("CheckoutEventAwaitingHandler", `SELECT EXISTS (SELECT 1 FROM stripe_events
		WHERE object_id = $1 AND type LIKE 'checkout.session.%' AND handled AND awaiting_handler)`)

// CheckoutEventAwaitingHandler reports whether an event about Checkout
// Session sessionID is recorded and its handle_events job has not yet
// completed: that job records the session's order (and fulfils it, when
// paid) in the commit that completes it, which notifies order_changed.
func CheckoutEventAwaitingHandler(ctx context.Context, db DB, sessionID string) (bool, error) {
	var awaiting bool
	if err := db.QueryRow(ctx, checkoutEventAwaitingSQL, sessionID).Scan(&awaiting); err != nil {
		return false, fmt.Errorf("looking for the recorded events of checkout session %s: %w", sessionID, err)
	}
	return awaiting, nil
}
