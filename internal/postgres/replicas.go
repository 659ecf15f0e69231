package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Heartbeat records that replica is alive. A replica beats before it starts
// working jobs, so its jobs are never taken for a dead replica's.
func Heartbeat(ctx context.Context, db DB, replica string) error {
	_, err := db.Exec(ctx, `INSERT INTO replicas (name) VALUES ($1)
		ON CONFLICT (name) DO UPDATE SET heartbeat_at = now()`, replica)
	if err != nil {
		return fmt.Errorf("recording heartbeat of %s: %w", replica, err)
	}
	return nil
}

// Leave removes a replica that stopped cleanly: whatever it left running
// (nothing, after a clean stop) is rescued at the next pass.
func Leave(ctx context.Context, db DB, replica string) error {
	_, err := db.Exec(ctx, `DELETE FROM replicas WHERE name = $1`, replica)
	return err
}

// RescuedJob is a job handed back to the queue after its replica died.
type RescuedJob struct {
	ID      int64
	Kind    string
	Replica string
}

// RescueOrphanedJobs makes available again every running job whose replica
// (the last entry of River's attempted_by, the River client ID) has not
// beaten for staleAfter, and forgets replicas silent for a day. River's own
// rescuer would wait RescueStuckJobsAfter (an hour past the job timeout by
// default) whether the replica lives or not; this one acts as soon as the
// replica is known dead. A rescued job runs again as a retry: every job is
// written so that a second run is harmless, and create_key waits out the
// dead runner's lease before it looks for the key.
func RescueOrphanedJobs(ctx context.Context, db DB, staleAfter time.Duration) ([]RescuedJob, error) {
	rows, err := db.Query(ctx, `
		UPDATE river_job j SET state = 'available', scheduled_at = now(),
			errors = array_append(j.errors, jsonb_build_object(
				'at', now(), 'attempt', j.attempt, 'trace', '',
				'error', 'replica ' || j.attempted_by[cardinality(j.attempted_by)] || ' stopped while running this job; rescued')),
			metadata = j.metadata || jsonb_build_object('rescued_from', j.attempted_by[cardinality(j.attempted_by)])
		WHERE j.state = 'running'
		  AND NOT EXISTS (SELECT 1 FROM replicas r
		                  WHERE r.name = j.attempted_by[cardinality(j.attempted_by)]
		                    AND r.heartbeat_at > now() - $1::interval)
		RETURNING j.id, j.kind, COALESCE(j.attempted_by[cardinality(j.attempted_by)], '')`, staleAfter)
	if err != nil {
		return nil, fmt.Errorf("rescuing jobs of stopped replicas: %w", err)
	}
	jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RescuedJob, error) {
		var j RescuedJob
		return j, r.Scan(&j.ID, &j.Kind, &j.Replica)
	})
	if err != nil {
		return nil, fmt.Errorf("rescuing jobs of stopped replicas: %w", err)
	}
	if _, err := db.Exec(ctx, `DELETE FROM replicas WHERE heartbeat_at < now() - interval '1 day'`); err != nil {
		return nil, fmt.Errorf("forgetting stopped replicas: %w", err)
	}
	return jobs, nil
}

// liveJobStates are the River job states of a job that waits or runs.
const liveJobStates = `('available', 'pending', 'retryable', 'running', 'scheduled')`

// The orders with a job waiting or running are found once per run, from
// the few live jobs (MATERIALIZED), and each candidate is looked up in
// that set (a hashed NOT IN; no NULL can be in it, as the join excludes
// them): checked per candidate, the live jobs were read again for every
// pending unit.
var stalledUnitsSQL = lookup("StalledOrders/units", `
		WITH busy AS MATERIALIZED (
			SELECT DISTINCT k2.checkout_session_id FROM river_job j
			JOIN order_keys k2 ON k2.id = (j.args->>'order_key_id')::bigint
			WHERE j.kind = $1 AND j.state IN `+liveJobStates+`
		)
		SELECT DISTINCT k.checkout_session_id FROM order_keys k
		JOIN orders o ON o.checkout_session_id = k.checkout_session_id
		WHERE k.status = 'pending' AND o.status = 'pending' AND k.updated_at < now() - $2::interval
		  AND k.checkout_session_id NOT IN (SELECT checkout_session_id FROM busy)
		LIMIT $3`)

// orders_paid_unloaded_idx (migration 0061) holds exactly the orders this
// reads: paid, complete and never expanded, a few at any moment. Their
// live fulfil_order jobs are read once, as above.
var stalledNotLoadedSQL = lookup("StalledOrders/notLoaded", `
		WITH busy AS MATERIALIZED (
			SELECT (j.args->>'order_id')::bigint AS order_id,
			       -- queued by a replica of the previous version
			       j.args->>'checkout_session_id' AS checkout_session_id
			FROM river_job j WHERE j.kind = $1 AND j.state IN `+liveJobStates+`
		)
		SELECT o.checkout_session_id FROM orders o
		WHERE o.status = 'pending' AND o.items_loaded_at IS NULL AND o.session_status = 'complete'
		  AND o.payment_status IN ('paid', 'no_payment_required') AND o.updated_at < now() - $2::interval
		  AND o.id NOT IN (SELECT order_id FROM busy WHERE order_id IS NOT NULL)
		  AND o.checkout_session_id NOT IN (SELECT checkout_session_id FROM busy WHERE checkout_session_id IS NOT NULL)
		LIMIT $3`)

// StalledOrders lists paid orders with units to create and no create_key
// job waiting or running for any of them, and paid orders whose items were
// never loaded with no fulfil_order job: whatever broke the chain (a job
// discarded after its last attempt, an operator deleting a job), they are
// queued again.
func StalledOrders(ctx context.Context, db DB, createKind, fulfilKind string, olderThan time.Duration, limit int) (unitsPending, notLoaded []string, err error) {
	rows, err := db.Query(ctx, stalledUnitsSQL, createKind, olderThan, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("finding stalled orders: %w", err)
	}
	if unitsPending, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, nil, fmt.Errorf("finding stalled orders: %w", err)
	}
	rows, err = db.Query(ctx, stalledNotLoadedSQL, fulfilKind, olderThan, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("finding stalled orders: %w", err)
	}
	if notLoaded, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, nil, fmt.Errorf("finding stalled orders: %w", err)
	}
	return unitsPending, notLoaded, nil
}

// KeyJobInFlight reports whether a job of kind for order key id waits or
// runs: a support action under way on a key.
func KeyJobInFlight(ctx context.Context, db DB, kind string, id int64) (bool, error) {
	var found bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM river_job WHERE kind = $1
		AND state IN `+liveJobStates+`
		AND (args->>'order_key_id')::bigint = $2)`, kind, id).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("looking for %s jobs of order key %d: %w", kind, id, err)
	}
	return found, nil
}
