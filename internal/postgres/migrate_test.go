package postgres_test

import (
	"context"
	"io/fs"
	"log/slog"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/jobs"
	"fulfiller/internal/logging"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/migrations"
)

// The argument forms of the versions before migration 0028, with their
// insert options then.
type oldFulfilOrderArgs struct {
	CheckoutSessionID string `json:"checkout_session_id"`
}

func (oldFulfilOrderArgs) Kind() string { return "fulfil_order" }
func (oldFulfilOrderArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: jobs.QueueDefault, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
		rivertype.JobStateRunning, rivertype.JobStateScheduled}}}
}

type oldSendOrderEmailArgs struct {
	CheckoutSessionID string `json:"checkout_session_id"`
	Delivery          int    `json:"delivery"`
}

func (oldSendOrderEmailArgs) Kind() string { return "send_order_email" }
func (oldSendOrderEmailArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: jobs.QueueDefault, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

type oldSendKeyLookupEmailArgs struct {
	Email string `json:"email"`
}

func (oldSendKeyLookupEmailArgs) Kind() string { return "send_key_lookup_email" }
func (oldSendKeyLookupEmailArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: jobs.QueueDefault, MaxAttempts: 5}
}

func applyJobArgsMigration(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	sql, err := fs.ReadFile(migrations.FS, "0028_job_args_without_credentials.sql")
	require.NoError(t, err)
	_, err = pool.Exec(context.Background(), string(sql))
	require.NoError(t, err)
}

func jobArgs(t *testing.T, pool *pgxpool.Pool, id int64) string {
	t.Helper()
	var args string
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT args::text FROM river_job WHERE id = $1`, id).Scan(&args))
	return args
}

func TestJobArgsMigrationRewritesSessionIDsAndAddressesAndKeepsJobsUnique(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	o, err := postgres.UpsertOrder(ctx, pool, order.SessionDetails{CheckoutSessionID: "cs_test_migrated01", Mode: "payment",
		PaymentStatus: "paid", SessionStatus: "complete", CustomerEmail: "buyer@example.com"})
	require.NoError(t, err)
	ref := logging.OrderRef(o.CheckoutSessionID)
	// Not started: it only inserts, as the previous version did.
	client, err := jobs.NewClient(jobs.Deps{Pool: pool}, jobs.Config{})
	require.NoError(t, err)
	insert := func(args river.JobArgs) int64 {
		t.Helper()
		res, err := client.Insert(ctx, args, nil)
		require.NoError(t, err)
		return res.Job.ID
	}
	fulfil := insert(oldFulfilOrderArgs{CheckoutSessionID: o.CheckoutSessionID})
	orphan := insert(oldFulfilOrderArgs{CheckoutSessionID: "cs_test_noorder01"})
	email := insert(oldSendOrderEmailArgs{CheckoutSessionID: o.CheckoutSessionID, Delivery: 1})
	lookup := insert(oldSendKeyLookupEmailArgs{Email: "buyer@example.com"})
	sentLookup := insert(oldSendKeyLookupEmailArgs{Email: "buyer@example.com"})
	_, err = pool.Exec(ctx, `UPDATE river_job SET state = 'completed', finalized_at = now() WHERE id = $1`, sentLookup)
	require.NoError(t, err)

	applyJobArgsMigration(t, pool)

	var leaks int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE args::text LIKE '%cs\_%' OR args::text LIKE '%@%'`).Scan(&leaks))
	require.Zero(t, leaks, "no job's arguments hold a Checkout Session ID or an address")
	require.JSONEq(t, `{"order_id":`+itoa(o.ID)+`,"order_ref":"`+ref+`"}`, jobArgs(t, pool, fulfil))
	require.JSONEq(t, `{"order_id":0,"order_ref":"`+logging.OrderRef("cs_test_noorder01")+`"}`, jobArgs(t, pool, orphan))
	require.JSONEq(t, `{"order_id":`+itoa(o.ID)+`,"order_ref":"`+ref+`","delivery":1}`, jobArgs(t, pool, email))
	require.JSONEq(t, `{"request_id":0}`, jobArgs(t, pool, sentLookup), "a finished job's address is dropped")

	// The waiting find-my-keys job names a request row holding the
	// address, dated when the job was queued.
	var request int64
	var address string
	var sameTime bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT e.id, e.email, e.created_at = j.created_at FROM river_job j
		JOIN key_lookup_emails e ON e.id = (j.args->>'request_id')::bigint WHERE j.id = $1`, lookup).Scan(&request, &address, &sameTime))
	require.Equal(t, "buyer@example.com", address)
	require.True(t, sameTime)
	require.JSONEq(t, `{"request_id":`+itoa(request)+`}`, jobArgs(t, pool, lookup))
	var requests int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM key_lookup_emails`).Scan(&requests))
	require.Equal(t, 1, requests)

	// A job of the new form for the same work finds the rewritten one: the
	// unique keys were recomputed as River computes them.
	res, err := client.Insert(ctx, jobs.FulfilOrderArgs{OrderID: o.ID, OrderRef: ref}, nil)
	require.NoError(t, err)
	require.True(t, res.UniqueSkippedAsDuplicate)
	require.Equal(t, fulfil, res.Job.ID)
	res, err = client.Insert(ctx, jobs.SendOrderEmailArgs{OrderID: o.ID, OrderRef: ref, Delivery: 1}, nil)
	require.NoError(t, err)
	require.True(t, res.UniqueSkippedAsDuplicate)
	require.Equal(t, email, res.Job.ID)
	res, err = client.Insert(ctx, jobs.SendOrderEmailArgs{OrderID: o.ID, OrderRef: ref, Delivery: 2}, nil)
	require.NoError(t, err)
	require.False(t, res.UniqueSkippedAsDuplicate, "another delivery is another job")

	// Applied again (after a rolling deploy), it rewrites only what is
	// still of the old form.
	late := insert(oldFulfilOrderArgs{CheckoutSessionID: "cs_test_noorder02"})
	before := jobArgs(t, pool, fulfil)
	applyJobArgsMigration(t, pool)
	require.Equal(t, before, jobArgs(t, pool, fulfil))
	require.JSONEq(t, `{"order_id":0,"order_ref":"`+logging.OrderRef("cs_test_noorder02")+`"}`, jobArgs(t, pool, late))
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM key_lookup_emails`).Scan(&requests))
	require.Equal(t, 1, requests)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// Refusals recorded before the mark existed are read from their reason.
func TestMigrationMarksEarlierProjectRefusals(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `ALTER TABLE order_keys DROP COLUMN replan; DELETE FROM fulfiller_migrations WHERE version = 25`)
	require.NoError(t, err)
	project := replanOrder(t, pool, "cs_test_oldproject")
	other := replanOrder(t, pool, "cs_test_oldother")
	// The reasons as create_key recorded them.
	_, err = pool.Exec(ctx, `UPDATE order_keys SET status = 'failed', last_error = $2 WHERE id = $1`, project["li_typo/1"],
		"luarmor refused the key of project typo: luarmor: POST /v3/projects/{project_id}/users: HTTP 404 not_found: Project not found!")
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE order_keys SET status = 'failed', last_error = $2 WHERE id = $1`, other["li_typo/1"],
		"luarmor refused the key of project typo: luarmor: POST /v3/projects/{project_id}/users: HTTP 400 invalid_input: Request refused.")
	require.NoError(t, err)

	require.NoError(t, postgres.Migrate(ctx, pool, slog.New(slog.DiscardHandler)))

	require.Equal(t, map[int64]bool{project["li_typo/1"]: true, project["li_typo/2"]: true, project["li_good/1"]: false},
		replanned(t, pool, "cs_test_oldproject"))
	require.Equal(t, map[int64]bool{other["li_typo/1"]: false, other["li_typo/2"]: false, other["li_good/1"]: false},
		replanned(t, pool, "cs_test_oldother"), "the route names projects; only Luarmor's message counts")
}
