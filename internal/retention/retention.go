// Package retention drops what the service no longer needs, so the database
// grows with what must be kept, not with everything that ever happened.
//
// What goes, after how long (Prunables, pruned by the periodic
// prune_history job, internal/jobs):
//
//   - stripe_event_payloads: the body of a Stripe event, after
//     RETENTION_EVENT_PAYLOAD_DAYS (35 days). Only the handle_events job
//     reads it, right after intake. Never while the event still waits for
//     that job (awaiting_handler), however old.
//   - stripe_event_rows: the event's row itself (ID, type, object, times),
//     after RETENTION_EVENT_ID_DAYS (90 days, at least the body's age),
//     never while it waits for its job. Until then a late duplicate
//     delivery, or reconciliation listing the event again, finds the ID and
//     is refused. None comes later: Stripe retries a delivery for 3 days
//     and lists or resends events of the last 30 days only, and
//     reconciliation looks back at most that far.
//   - outbound_delivery_attempts: each attempt's status and error of an
//     outbound delivery no longer pending, after RETENTION_DELIVERY_LOG_DAYS
//     (90 days).
//   - outbound_deliveries: a delivery finished (delivered, or failed for
//     good) and unchanged for RETENTION_DELIVERY_LOG_DAYS, with its
//     attempts, and with the event's last delivery the event's body
//     (outbound_events.data), which only a delivery sends. Such a delivery
//     can no longer be shown or replayed: the admin API and the console
//     refuse, saying it is no longer kept, rather than send the event
//     without its body. A pending delivery stays, however old. The event's
//     row (ID, type, subject, order, time) stays for good: it is the
//     once-per-(type, subject) guard (a repeated webhook, a job run twice,
//     the hourly key.expiring check of postgres.KeysExpiringUnannounced
//     tell the shop nothing twice). An event with no destination is
//     recorded without a body from the start.
//   - luarmor_call_log: each Luarmor request made for an order or a key
//     (endpoint, status, time taken, job), after RETENTION_CALL_LOG_DAYS
//     (90 days): the console's timeline of an order, read when a buyer
//     asks why a key came late or changed.
//
// Pruned elsewhere, where they are written: find-my-keys requests and
// addresses (internal/jobs, key_lookup.go), Luarmor budget slots after 24
// hours (internal/budget), used Discord sign-in states after a day and
// replicas silent for a day (internal/postgres), the keys queued for the
// expiry notices once checked or once their expiry passed (the hourly
// queue_expiry_notices job, postgres.ExpiringKeys), and River's own
// finished jobs (the client's retention periods, internal/jobs).
//
// What stays for good: orders, their keys, the entitlement ledger and its
// grants, revocations, refunds, disputes, reissues, HWID resets, stock
// keys sold, the support audit log, order_emails and lifecycle_emails
// (their rows are what keeps an email from being sent twice; no email's
// body is ever stored) and the outbound events' rows. Each is what an
// entitlement, a refund, a dispute or an audit is decided or answered
// from. docs/operating.md (Retention) holds the same table for operators.
//
// What stays is kept small: an index is there because a look-up reads it
// (internal/postgres' plan test) or because it guards a uniqueness;
// indexes compared only for equality on long IDs are hash indexes
// (migration 0059); rows kept for good name their order by its number
// where they can (order_lines, order_emails: migration 0069); and a
// uniqueness no look-up reads is guarded by a 64-bit hash of the value
// or by the columns writers name (migration 0070).
//
// Each prune is a batch of at most BatchSize rows in its own short
// transaction; a run stops when a batch comes back short or its time is up,
// and the next run goes on where it stopped. A run cut off at any point
// loses only the batch in flight, which rolls back whole.
package retention

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults of the settings.
const (
	// DefaultEventPayloadAge keeps an event's body past Stripe's own 30
	// days of events (the longest RECONCILE_LOOKBACK), and so past every
	// time Stripe may still send the event again, with a margin.
	DefaultEventPayloadAge = 35 * 24 * time.Hour
	// DefaultEventIDAge keeps an event's ID three times as long as Stripe
	// can send it again (30 days), and as long as the console's timeline
	// of an order shows its Luarmor calls and deliveries.
	DefaultEventIDAge = 90 * 24 * time.Hour
	// DefaultDeliveryLogAge keeps a quarter of a year of outbound delivery
	// attempts for the shop's developers to look back on.
	DefaultDeliveryLogAge = 90 * 24 * time.Hour
	// DefaultCallLogAge keeps the Luarmor calls of a quarter of a year of
	// orders, past a buyer's question about a recent one.
	DefaultCallLogAge = 90 * 24 * time.Hour
	// DefaultBatchSize rows per statement: a few milliseconds of row locks.
	DefaultBatchSize = 2000
	// StripeRetryWindow is how long Stripe retries a webhook delivery.
	StripeRetryWindow = 72 * time.Hour
)

// Settings are how long each prunable thing is kept; zero means its
// default.
type Settings struct {
	// EventPayloadAge is RETENTION_EVENT_PAYLOAD_DAYS.
	EventPayloadAge time.Duration
	// EventIDAge is RETENTION_EVENT_ID_DAYS.
	EventIDAge time.Duration
	// DeliveryLogAge is RETENTION_DELIVERY_LOG_DAYS.
	DeliveryLogAge time.Duration
	// CallLogAge is RETENTION_CALL_LOG_DAYS.
	CallLogAge time.Duration
}

// WithDefaults returns s with each zero age set to its default.
func (s Settings) WithDefaults() Settings {
	if s.EventPayloadAge <= 0 {
		s.EventPayloadAge = DefaultEventPayloadAge
	}
	if s.EventIDAge <= 0 {
		s.EventIDAge = max(DefaultEventIDAge, s.EventPayloadAge)
	}
	if s.DeliveryLogAge <= 0 {
		s.DeliveryLogAge = DefaultDeliveryLogAge
	}
	if s.CallLogAge <= 0 {
		s.CallLogAge = DefaultCallLogAge
	}
	return s
}

// MinEventPayloadAge is the shortest time event bodies may be kept with a
// reconciliation looking back reconcileLookback: at least as long as an
// event may still be sent again, by Stripe's retries or found again by
// reconciliation, in whole days.
func MinEventPayloadAge(reconcileLookback time.Duration) time.Duration {
	const day = 24 * time.Hour
	d := max(reconcileLookback, StripeRetryWindow)
	return (d + day - 1) / day * day
}

// Prunable is one kind of row, or part of a row, dropped after an age.
type Prunable struct {
	// Kind names it in metrics, logs and the job's output.
	Kind string
	// Tables are the tables whose rows, or a column of them, it drops.
	Tables []string
	// Setting is the setting its age is read from.
	Setting string
	// Age is how long it is kept.
	Age func(Settings) time.Duration
	// SQL prunes at most $2 rows older than $1 (a timestamptz), one
	// statement, skipping rows another transaction holds; the rows it
	// affected are the rows pruned. The batch's IDs are picked first, as
	// an array (= ANY(ARRAY(...))), so the planner reads them by primary
	// key and never joins them to the whole table (IN (...) may be
	// planned as a hash join over a sequential scan).
	SQL string
}

// Prunables is everything the prune_history job drops. A table that grows
// with history and may be dropped after an age joins with one entry.
var Prunables = []Prunable{
	{
		Kind:    "stripe_event_payloads",
		Tables:  []string{"stripe_events"},
		Setting: "RETENTION_EVENT_PAYLOAD_DAYS",
		Age:     func(s Settings) time.Duration { return s.EventPayloadAge },
		// An event of a type the service does not handle is never queued,
		// so it waits for nothing; the others once their job completed.
		SQL: `UPDATE stripe_events SET payload = NULL WHERE id = ANY(ARRAY(
			SELECT id FROM stripe_events
			WHERE payload IS NOT NULL AND received_at < $1 AND (NOT handled OR NOT awaiting_handler)
			ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED))`,
	},
	{
		Kind:    "stripe_event_rows",
		Tables:  []string{"stripe_events"},
		Setting: "RETENTION_EVENT_ID_DAYS",
		Age:     func(s Settings) time.Duration { return s.EventIDAge },
		// The same rule as the body's: never while the event waits for
		// its job. A row still holding its body (kept longer on purpose)
		// goes with it.
		SQL: `DELETE FROM stripe_events WHERE id = ANY(ARRAY(
			SELECT id FROM stripe_events
			WHERE received_at < $1 AND (NOT handled OR NOT awaiting_handler)
			ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED))`,
	},
	{
		Kind:    "outbound_delivery_attempts",
		Tables:  []string{"outbound_delivery_attempts"},
		Setting: "RETENTION_DELIVERY_LOG_DAYS",
		Age:     func(s Settings) time.Duration { return s.DeliveryLogAge },
		// A pending delivery's attempts are counted by its job (how many
		// it made of the current replay): they stay until it is done.
		SQL: `DELETE FROM outbound_delivery_attempts WHERE id = ANY(ARRAY(
			SELECT a.id FROM outbound_delivery_attempts a JOIN outbound_deliveries d ON d.id = a.delivery_id
			WHERE a.at < $1 AND d.status <> 'pending'
			ORDER BY a.at LIMIT $2 FOR UPDATE OF a SKIP LOCKED))`,
	},
	{
		Kind:    "outbound_deliveries",
		Tables:  []string{"outbound_deliveries", "outbound_delivery_attempts", "outbound_events"},
		Setting: "RETENTION_DELIVERY_LOG_DAYS",
		Age:     func(s Settings) time.Duration { return s.DeliveryLogAge },
		// A delivery is finished once it is no longer pending; a replay
		// makes it pending again (and so keeps it), and every attempt
		// moves updated_at. Its attempts go with it (ON DELETE CASCADE),
		// and its event's body goes with the event's last delivery: only a
		// delivery sends it. The rows it affected are the deliveries. A
		// replay of a delivery in the batch waits for the batch's lock,
		// then finds it gone and is refused.
		SQL: `WITH batch AS (
			SELECT id, event_id FROM outbound_deliveries
			WHERE status <> 'pending' AND updated_at < $1
			ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED
		), per_event AS (
			SELECT event_id, count(*) AS n FROM batch GROUP BY event_id
		), bodies AS (
			UPDATE outbound_events e SET data = NULL FROM per_event p
			WHERE e.id = ANY(ARRAY(SELECT event_id FROM per_event)) AND e.id = p.event_id AND e.data IS NOT NULL
				AND (SELECT count(*) FROM outbound_deliveries d WHERE d.event_id = e.id) = p.n)
		DELETE FROM outbound_deliveries WHERE id = ANY(ARRAY(SELECT id FROM batch))`,
	},
	{
		Kind:    "luarmor_call_log",
		Tables:  []string{"luarmor_call_log"},
		Setting: "RETENTION_CALL_LOG_DAYS",
		Age:     func(s Settings) time.Duration { return s.CallLogAge },
		// Rows are written in the order of their ids, so the oldest come
		// first on the primary key and a batch stops at its limit. The
		// batch is picked once, into an array, as the others are: a
		// locking pick rescanned in a nested loop would skip the rows the
		// statement had just deleted and go on past its limit.
		SQL: `DELETE FROM luarmor_call_log WHERE id = ANY(ARRAY(
			SELECT id FROM luarmor_call_log WHERE sent_at < $1
			ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED))`,
	},
}

// Tables lists the tables Prunables prune, each once, in order.
func Tables() []string {
	var out []string
	for _, p := range Prunables {
		for _, t := range p.Tables {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// Kinds lists the kinds of Prunables, in order.
func Kinds() []string {
	out := make([]string, len(Prunables))
	for i, p := range Prunables {
		out[i] = p.Kind
	}
	return out
}

// Timeouts of one batch: it never waits long for a lock another
// transaction holds (a migration's), and never runs long itself.
const (
	batchLockTimeout      = "2s"
	batchStatementTimeout = "60s"
)

// Pruner drops what Prunables says is past its age.
type Pruner struct {
	Pool     *pgxpool.Pool
	Settings Settings
	// BatchSize is the most rows one statement prunes; 0 means
	// DefaultBatchSize.
	BatchSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnBatch, when set, is told of each committed batch: its kind and the
	// rows it pruned (possibly 0).
	OnBatch func(kind string, rows int64)
}

// Summary is what a run pruned.
type Summary struct {
	// Pruned counts the rows pruned per kind.
	Pruned map[string]int64 `json:"pruned"`
	// Complete is false when the run's time was up before every kind was
	// done; the next run goes on.
	Complete bool `json:"complete"`
}

// Run prunes every kind in turn, batch by batch, until each is done or
// until is past. The summary counts what was pruned, also when Run fails.
func (p *Pruner) Run(ctx context.Context, until time.Time) (Summary, error) {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	batch := p.BatchSize
	if batch <= 0 {
		batch = DefaultBatchSize
	}
	settings := p.Settings.WithDefaults()
	sum := Summary{Pruned: map[string]int64{}}
	for _, kind := range Prunables {
		cutoff := now().Add(-kind.Age(settings))
		for {
			if time.Now().After(until) {
				return sum, nil
			}
			n, err := p.batch(ctx, kind, cutoff, batch)
			if err != nil {
				return sum, fmt.Errorf("pruning %s older than %s (%s): %w", kind.Kind, cutoff.UTC().Format(time.RFC3339), kind.Setting, err)
			}
			sum.Pruned[kind.Kind] += n
			if p.OnBatch != nil {
				p.OnBatch(kind.Kind, n)
			}
			if n < int64(batch) {
				break
			}
		}
	}
	sum.Complete = true
	return sum, nil
}

// batch prunes one batch of kind in its own transaction.
func (p *Pruner) batch(ctx context.Context, kind Prunable, cutoff time.Time, limit int) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, p.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)`,
			batchLockTimeout, batchStatementTimeout); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, kind.SQL, cutoff, limit)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}
