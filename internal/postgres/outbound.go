package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/order"
	"fulfiller/internal/outbound"
)

// RecordOutboundEvent records e (its ID, type and data) about subject, of
// order orderID (0: none), and one pending delivery per destination, in
// tx. It returns the deliveries' IDs; none when the event was recorded
// before (a repeated webhook, a job run twice).
func RecordOutboundEvent(ctx context.Context, tx pgx.Tx, e outbound.Event, subject string, orderID int64, to []outbound.Destination) ([]int64, error) {
	// Only a delivery sends the body: an event with no destination is
	// recorded for its (type, subject) alone, the guard against telling
	// the shop twice.
	var data []byte
	if len(to) > 0 {
		var err error
		if data, err = json.Marshal(e.Data); err != nil {
			return nil, fmt.Errorf("encoding the %s event of %s: %w", e.Type, subject, err)
		}
	}
	var id int64
	err := tx.QueryRow(ctx, `INSERT INTO outbound_events (event_id, type, subject, order_id, data, created_at)
		VALUES ($1, $2, $3, NULLIF($4, 0), $5, to_timestamp($6))
		ON CONFLICT (type, subject) DO NOTHING RETURNING id`,
		e.ID, e.Type, subject, orderID, data, e.Created).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("recording the %s event of %s: %w", e.Type, subject, err)
	}
	ids := make([]int64, 0, len(to))
	for _, d := range to {
		var did int64
		err := tx.QueryRow(ctx, `INSERT INTO outbound_deliveries (event_id, destination, endpoint)
			VALUES ($1, $2, $3) RETURNING id`, id, d.Kind, d.Endpoint).Scan(&did)
		if err != nil {
			return nil, fmt.Errorf("recording the %s delivery of the %s event of %s: %w", d.Kind, e.Type, subject, err)
		}
		ids = append(ids, did)
	}
	return ids, nil
}

// OutboundDelivery is one delivery of an event to one destination.
type OutboundDelivery struct {
	ID          int64
	Destination outbound.Destination
	Status      string // pending, delivered, failed
	Attempts    int
	Replays     int
	LastStatus  *int
	LastError   string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	DeliveredAt *time.Time
	Event       outbound.Event
}

const outboundDeliveryColumns = `d.id, d.destination, d.endpoint, d.status, d.attempts, d.replays, d.last_status, d.last_error,
	d.created_at, d.updated_at, d.delivered_at, e.event_id, e.type, extract(epoch FROM e.created_at)::bigint, e.data`

func scanOutboundDelivery(row pgx.Row) (*OutboundDelivery, error) {
	var d OutboundDelivery
	var data []byte
	err := row.Scan(&d.ID, &d.Destination.Kind, &d.Destination.Endpoint, &d.Status, &d.Attempts, &d.Replays, &d.LastStatus, &d.LastError,
		&d.CreatedAt, &d.UpdatedAt, &d.DeliveredAt, &d.Event.ID, &d.Event.Type, &d.Event.Created, &data)
	if err != nil {
		return nil, err
	}
	if data == nil {
		// Never while a delivery of the event is kept (retention drops a
		// body only once its deliveries are gone): sending anything in its
		// place would tell the shop something else under the event's ID.
		return nil, fmt.Errorf("event %s of webhook delivery %d has no body stored: it cannot be shown or sent again", d.Event.ID, d.ID)
	}
	if err := json.Unmarshal(data, &d.Event.Data); err != nil {
		return nil, fmt.Errorf("decoding event %s: %w", d.Event.ID, err)
	}
	return &d, nil
}

// GetOutboundDelivery returns delivery id with its event; order.ENOTFOUND
// when there is none.
func GetOutboundDelivery(ctx context.Context, db DB, id int64) (*OutboundDelivery, error) {
	d, err := scanOutboundDelivery(db.QueryRow(ctx, `SELECT `+outboundDeliveryColumns+`
		FROM outbound_deliveries d JOIN outbound_events e ON e.id = d.event_id WHERE d.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, missingDelivery(ctx, db, id)
	}
	if err != nil {
		return nil, fmt.Errorf("reading webhook delivery %d: %w", id, err)
	}
	return d, nil
}

// missingDelivery is the error for delivery id, which is not stored: one
// the sequence has handed out was recorded and has since been pruned
// (internal/retention: a delivery finished more than
// RETENTION_DELIVERY_LOG_DAYS ago goes with its event's body), so it
// cannot be shown or replayed; any other was never made.
func missingDelivery(ctx context.Context, db DB, id int64) error {
	var issued bool
	err := db.QueryRow(ctx, `SELECT $1 <= last_value AND is_called FROM outbound_deliveries_id_seq`, id).Scan(&issued)
	if err != nil {
		return fmt.Errorf("reading webhook delivery %d: %w", id, err)
	}
	if issued {
		return order.Errorf(order.ENOTFOUND, "webhook delivery %d is no longer kept: a delivery finished more than "+
			"RETENTION_DELIVERY_LOG_DAYS ago is deleted with its event's body, so it cannot be shown or replayed; "+
			"its event (type, subject, event ID) is still recorded", id)
	}
	return order.Errorf(order.ENOTFOUND, "no webhook delivery %d", id)
}

// DeliveryFilter narrows a listing of deliveries; its zero value lists
// them all.
type DeliveryFilter struct {
	Status      string // pending, delivered or failed
	Destination string // outbound.DestinationWebhook or DestinationDiscord
	Type        outbound.EventType
	// OrderID: only the events about that order.
	OrderID int64
}

// deliveryStatuses are the statuses a delivery can be in. A listing by
// status names it in the query's text: few deliveries fail, most are
// delivered, and only a plan made for the value reads the failed ones
// through outbound_deliveries_status_idx.
var deliveryStatuses = []string{"pending", "delivered", "failed"}

// listOutboundDeliveries holds the delivery log's query per status ("" for
// any) and set of other filters present: a query of
// "($3 = ” OR d.type = $3)", planned once for any value
// (SessionSettings), could not use the index of a filter, nor skip one
// left empty.
var listOutboundDeliveries = func() map[string]*filterQueries {
	queries := map[string]*filterQueries{}
	for _, status := range append([]string{""}, deliveryStatuses...) {
		var always []queryFilter
		if status != "" {
			always = []queryFilter{{"status=" + status, "d.status = '" + status + "'"}}
		}
		queries[status] = newFilterQueries(filterListing{
			name: "ListOutboundDeliveries",
			selectFrom: `SELECT ` + outboundDeliveryColumns + `
		FROM outbound_deliveries d JOIN outbound_events e ON e.id = d.event_id`,
			always:      always,
			fixedParams: 1, // the limit
			filters: []queryFilter{
				{"before", "d.id < " + filterParam},
				{"destination", "d.destination = " + filterParam},
				{"type", "e.type = " + filterParam},
				{"order", "e.order_id = " + filterParam},
			},
			tail: `ORDER BY d.id DESC LIMIT $1`,
		})
	}
	return queries
}()

// ListOutboundDeliveries lists the deliveries f lets through, newest first,
// older than before (0: from the newest), at most limit.
func ListOutboundDeliveries(ctx context.Context, db DB, f DeliveryFilter, before int64, limit int) ([]OutboundDelivery, error) {
	if f.Status != "" && !slices.Contains(deliveryStatuses, f.Status) {
		return nil, order.Errorf(order.EINVALID, "deliveries are pending, delivered or failed, not %q", f.Status)
	}
	sql, args := listOutboundDeliveries[f.Status].query([]any{limit},
		unlessZero(before), unlessZero(f.Destination), unlessZero(string(f.Type)), unlessZero(f.OrderID))
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("listing webhook deliveries: %w", err)
	}
	defer rows.Close()
	out := []OutboundDelivery{}
	for rows.Next() {
		d, err := scanOutboundDelivery(rows)
		if err != nil {
			return nil, fmt.Errorf("listing webhook deliveries: %w", err)
		}
		out = append(out, *d)
	}
	return out, rows.Err()
}

// OutboundAttempt is one attempt of a delivery.
type OutboundAttempt struct {
	Replay   int
	At       time.Time
	Status   *int
	Duration time.Duration
	Error    string
}

// RecordOutboundAttempt records an attempt of delivery id and its outcome:
// status is the delivery's status after it (pending while it is retried).
func RecordOutboundAttempt(ctx context.Context, db DB, id int64, a OutboundAttempt, status string) error {
	_, err := db.Exec(ctx, `WITH a AS (
			INSERT INTO outbound_delivery_attempts (delivery_id, replay, status_code, duration_ms, error)
			VALUES ($1, $2, $3, $4, $5))
		UPDATE outbound_deliveries SET attempts = attempts + 1, last_status = $3, last_error = $5, status = $6,
			updated_at = now(), delivered_at = CASE WHEN $6 = 'delivered' THEN now() ELSE delivered_at END
		WHERE id = $1`, id, a.Replay, a.Status, a.Duration.Milliseconds(), a.Error, status)
	if err != nil {
		return fmt.Errorf("recording an attempt of webhook delivery %d: %w", id, err)
	}
	return nil
}

// CountOutboundAttempts is how many attempts of delivery id's replay (0:
// its first delivery) are recorded.
func CountOutboundAttempts(ctx context.Context, db DB, id int64, replay int) (int, error) {
	var n int
	err := db.QueryRow(ctx, `SELECT count(*) FROM outbound_delivery_attempts WHERE delivery_id = $1 AND replay = $2`, id, replay).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting the attempts of webhook delivery %d: %w", id, err)
	}
	return n, nil
}

// OutboundAttempts lists delivery id's attempts, oldest first.
func OutboundAttempts(ctx context.Context, db DB, id int64) ([]OutboundAttempt, error) {
	rows, err := db.Query(ctx, `SELECT replay, at, status_code, duration_ms, error FROM outbound_delivery_attempts
		WHERE delivery_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("listing the attempts of webhook delivery %d: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (OutboundAttempt, error) {
		var a OutboundAttempt
		var ms int64
		err := r.Scan(&a.Replay, &a.At, &a.Status, &ms, &a.Error)
		a.Duration = time.Duration(ms) * time.Millisecond
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing the attempts of webhook delivery %d: %w", id, err)
	}
	return out, nil
}

// ReplayOutboundDelivery marks delivery id pending again for one more
// replay, and returns the replay's number, in tx.
func ReplayOutboundDelivery(ctx context.Context, tx pgx.Tx, id int64) (int, error) {
	var replay int
	err := tx.QueryRow(ctx, `UPDATE outbound_deliveries SET replays = replays + 1, status = 'pending', updated_at = now()
		WHERE id = $1 RETURNING replays`, id).Scan(&replay)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, missingDelivery(ctx, tx, id)
	}
	if err != nil {
		return 0, fmt.Errorf("replaying webhook delivery %d: %w", id, err)
	}
	return replay, nil
}

// NextOutboundAttempts says when each of the pending deliveries ids is
// tried next: the scheduled time of the job serving its latest replay, or
// when that job started, while it runs. A delivery whose job is gone
// (finished, or cancelled) is absent.
func NextOutboundAttempts(ctx context.Context, db DB, ids []int64) (map[int64]time.Time, error) {
	out := map[int64]time.Time{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := db.Query(ctx, `SELECT (args->>'delivery_id')::bigint,
			CASE WHEN state = 'running' THEN COALESCE(attempted_at, scheduled_at) ELSE scheduled_at END
		FROM river_job
		WHERE args @> ANY(ARRAY(SELECT jsonb_build_object('delivery_id', id, 'replay', replays)
				FROM outbound_deliveries WHERE id = ANY($1) AND status = 'pending'))
			AND kind = 'deliver_event' AND state IN ('available', 'scheduled', 'retryable', 'running', 'pending')`, ids)
	if err != nil {
		return nil, fmt.Errorf("reading when webhook deliveries are tried next: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return nil, fmt.Errorf("reading when webhook deliveries are tried next: %w", err)
		}
		out[id] = at
	}
	return out, rows.Err()
}
