// Package reconcile recovers Stripe events that never reached the webhook:
// an outage longer than Stripe's three days of retries, or an endpoint
// Stripe disabled, would otherwise lose renewals, disputes and refunds for
// good. It lists the recent events of the types the service handles
// through Stripe's events API and records each one not yet recorded
// through the webhook's own intake path, which enqueues the job that acts
// on it. An event already recorded costs one read and changes nothing, so
// runs may repeat, overlap or stop at any point.
package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"fulfiller/internal/jobs"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi"
	"fulfiller/internal/webhook"
)

// DefaultLookback is how far back a run looks unless told otherwise: the
// three days Stripe retries a webhook.
const DefaultLookback = 72 * time.Hour

// EventLister lists Stripe events as the raw JSON Stripe sent
// (*stripeapi.Client).
type EventLister interface {
	ListEvents(ctx context.Context, types []string, since time.Time, visit func(events []json.RawMessage) error) error
}

// Reconciler compares Stripe's events with the recorded ones.
type Reconciler struct {
	Pool   *pgxpool.Pool
	Stripe EventLister
	// Logger is nil for slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Summary counts what a run saw.
type Summary struct {
	// Listed is every event Stripe listed.
	Listed int `json:"listed"`
	// AlreadyRecorded were recorded before (by the webhook or a run).
	AlreadyRecorded int `json:"already_recorded"`
	// Ingested were recorded by this run; the new ones of a handled type
	// are queued for handling.
	Ingested int `json:"ingested"`
	// Unreadable failed the webhook's checks; each is logged and skipped.
	Unreadable int `json:"unreadable"`
}

func (s Summary) String() string {
	out := fmt.Sprintf("listed %d, already recorded %d, ingested %d", s.Listed, s.AlreadyRecorded, s.Ingested)
	if s.Unreadable > 0 {
		out += fmt.Sprintf(", unreadable %d (see the log)", s.Unreadable)
	}
	return out
}

// CheckLookback refuses a look-back Stripe cannot serve.
func CheckLookback(d time.Duration) error {
	switch {
	case d <= 0:
		return fmt.Errorf("look-back %s must be more than zero", d)
	case d > stripeapi.EventRetention:
		return fmt.Errorf("look-back %s is longer than Stripe keeps events (30 days): use at most 720h (30d)", d)
	}
	return nil
}

// Run lists the events of the handled types created in the last lookback
// and ingests those not recorded yet, a page at a time, each page in its
// own transaction: a run cut off keeps what it recorded, and the next
// finds the rest. rc enqueues the jobs that act on ingested events. The
// summary counts what was done, also when Run fails part way.
func (r *Reconciler) Run(ctx context.Context, rc *river.Client[pgx.Tx], lookback time.Duration) (Summary, error) {
	return r.run(ctx, rc, lookback, nil)
}

// progressPhase is a reconciliation's one phase.
const progressPhase = "listing Stripe's events"

// hoursOf is a look-back in whole hours, at least one: the unit of a
// reconciliation's progress.
func hoursOf(d time.Duration) int { return max(int((d+time.Hour-1)/time.Hour), 1) }

// run is Run recording its progress with progress: Stripe lists the newest
// events first, so the hours of the look-back a run has gone through are
// those back to the oldest event listed so far. A run retried lists from
// the newest again and counts from zero again.
func (r *Reconciler) run(ctx context.Context, rc *river.Client[pgx.Tx], lookback time.Duration, progress *jobs.ProgressRecorder) (Summary, error) {
	var sum Summary
	if err := CheckLookback(lookback); err != nil {
		return sum, err
	}
	if rc == nil {
		return sum, errors.New("reconcile: no job client to enqueue the events' handling")
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	start := now()
	since := start.Add(-lookback)
	total := hoursOf(lookback)
	progress.Record(ctx, jobs.Progress{Phase: progressPhase, Total: total, Unit: "hours of events checked"})
	err := r.Stripe.ListEvents(ctx, jobs.HandledTypes(), since, func(page []json.RawMessage) error {
		oldest, err := r.ingest(ctx, rc, page, &sum)
		if err == nil && !oldest.IsZero() {
			covered := min(int(start.Sub(oldest)/time.Hour), total)
			progress.Record(ctx, jobs.Progress{Phase: progressPhase, Done: covered, Total: total, Unit: "hours of events checked"})
		}
		return err
	})
	if err != nil {
		return sum, fmt.Errorf("reconciling Stripe events since %s: %w", since.UTC().Format(time.RFC3339), err)
	}
	progress.Record(ctx, jobs.Progress{Phase: progressPhase, Done: total, Total: total, Unit: "hours of events checked"})
	if sum.Ingested > 0 {
		r.logger().WarnContext(ctx, "Stripe events had not reached the webhook and are handled now; check the webhook endpoint in Stripe's dashboard (disabled, or failing deliveries?)",
			"ingested", sum.Ingested, "summary", sum.String())
	} else {
		r.logger().InfoContext(ctx, "reconciliation with Stripe's events found nothing missing", "summary", sum.String())
	}
	return sum, nil
}

// ingest records the page's events that are not recorded yet, and returns
// when the oldest readable one was created.
func (r *Reconciler) ingest(ctx context.Context, rc *river.Client[pgx.Tx], page []json.RawMessage, sum *Summary) (oldest time.Time, err error) {
	sum.Listed += len(page)
	events := make([]postgres.Event, 0, len(page))
	for _, raw := range page {
		e, err := webhook.ParseEvent(raw)
		if err != nil {
			// Retrying would read the same bytes: skip it, but loudly.
			sum.Unreadable++
			r.logger().ErrorContext(ctx, "event from Stripe's events API fails the webhook's checks; skipped", "error", err)
			continue
		}
		events = append(events, e)
	}
	// Stripe lists newest first; record in the order they happened.
	slices.Reverse(events)
	if len(events) > 0 {
		oldest = events[0].CreatedAt
	}

	recorded, err := recordedIDs(ctx, r.Pool, events)
	if err != nil {
		return oldest, err
	}
	var missing []postgres.Event
	for _, e := range events {
		if !recorded[e.ID] {
			missing = append(missing, e)
		}
	}
	sum.AlreadyRecorded += len(events) - len(missing)
	if len(missing) == 0 {
		return oldest, nil
	}
	// The webhook may record some of them meanwhile: RecordTx tells.
	var isNew []bool
	err = pgx.BeginFunc(ctx, r.Pool, func(tx pgx.Tx) error {
		var err error
		isNew, err = webhook.RecordTx(ctx, tx, rc, missing)
		return err
	})
	if err != nil {
		return oldest, fmt.Errorf("recording %d Stripe events: %w", len(missing), err)
	}
	for i, e := range missing {
		if !isNew[i] {
			sum.AlreadyRecorded++
			continue
		}
		sum.Ingested++
		r.logger().InfoContext(ctx, "Stripe event that never reached the webhook recorded", "event_id", e.ID, "type", e.Type,
			"created", e.CreatedAt.UTC().Format(time.RFC3339))
	}
	return oldest, nil
}

// recordedIDs returns which of events are recorded already: a read, so a
// run that finds everything recorded writes nothing.
func recordedIDs(ctx context.Context, pool *pgxpool.Pool, events []postgres.Event) (map[string]bool, error) {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	rows, err := pool.Query(ctx, `SELECT id FROM stripe_events WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("reading which of %d Stripe events are recorded: %w", len(ids), err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading which of %d Stripe events are recorded: %w", len(ids), err)
	}
	recorded := make(map[string]bool, len(found))
	for _, id := range found {
		recorded[id] = true
	}
	return recorded, nil
}

func (r *Reconciler) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.Default()
	}
	return r.Logger
}
