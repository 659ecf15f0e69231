package postgres_test

import (
	"context"
	"io/fs"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// Line items and keys emails recorded by session ID, before they named
// their order by number, are all there after migration 0069, each with
// its order, and the writers go on from them.
func TestMigrationNamesLinesAndEmailsByOrderNumber(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `DROP TABLE order_lines, order_emails;
		CREATE TABLE order_lines (
			checkout_session_id text NOT NULL REFERENCES orders (checkout_session_id),
			line_item_id text NOT NULL, position int NOT NULL, price_id text NOT NULL,
			product_name text NOT NULL DEFAULT '', description text NOT NULL DEFAULT '', quantity int NOT NULL,
			unit_amount bigint, amount_total bigint, currency text,
			PRIMARY KEY (checkout_session_id, line_item_id));
		CREATE TABLE order_emails (
			checkout_session_id text NOT NULL REFERENCES orders (checkout_session_id) ON DELETE CASCADE,
			delivery int NOT NULL CHECK (delivery >= 1),
			status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sending', 'sent', 'skipped', 'failed')),
			message_id text NOT NULL, attempts int NOT NULL DEFAULT 0, last_error text,
			created_at timestamptz NOT NULL DEFAULT now(), sent_at timestamptz,
			PRIMARY KEY (checkout_session_id, delivery));
		DELETE FROM fulfiller_migrations WHERE version = 69`)
	require.NoError(t, err)
	orders := map[string]*order.Order{}
	for _, id := range []string{"cs_test_linesbefore1", "cs_test_linesbefore2"} {
		o, err := postgres.UpsertOrder(ctx, pool, order.SessionDetails{CheckoutSessionID: id, Mode: "payment",
			PaymentStatus: "paid", SessionStatus: "complete", CustomerEmail: "buyer@example.com"})
		require.NoError(t, err)
		orders[id] = o
	}
	first, second := orders["cs_test_linesbefore1"], orders["cs_test_linesbefore2"]
	_, err = pool.Exec(ctx, `INSERT INTO order_lines (checkout_session_id, line_item_id, position, price_id, product_name,
			description, quantity, unit_amount, amount_total, currency) VALUES
		($1, 'li_b', 1, 'price_tiered', 'Tiered', '', 4, NULL, 1800, 'usd'),
		($1, 'li_a', 0, 'price_30', 'Pro key', '30 days', 2, 499, 998, 'usd'),
		($2, 'li_c', 0, 'price_7', 'Week key', '', 1, 199, 199, NULL)`, first.CheckoutSessionID, second.CheckoutSessionID)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO order_emails (checkout_session_id, delivery, status, message_id, attempts,
			last_error, created_at, sent_at) VALUES
		($1, 1, 'sent', '<one@shop.example>', 2, NULL, '2024-01-02T03:04:05Z', '2024-01-02T03:04:09Z'),
		($1, 2, 'queued', '<two@shop.example>', 1, 'smtp: 451 try later', '2024-02-02T03:04:05Z', NULL),
		($2, 1, 'failed', '<three@shop.example>', 1, 'smtp: 550 no such user', '2024-03-02T03:04:05Z', NULL)`,
		first.CheckoutSessionID, second.CheckoutSessionID)
	require.NoError(t, err)

	require.NoError(t, postgres.Migrate(ctx, pool, slog.New(slog.DiscardHandler)))

	amount := func(n int64) *int64 { return &n }
	got, err := postgres.GetOrder(ctx, pool, first.CheckoutSessionID)
	require.NoError(t, err)
	require.Equal(t, []order.PaidLine{
		{LineItemID: "li_a", PriceID: "price_30", ProductName: "Pro key", Description: "30 days", Quantity: 2,
			UnitAmount: amount(499), AmountTotal: amount(998), Currency: "usd"},
		{LineItemID: "li_b", PriceID: "price_tiered", ProductName: "Tiered", Quantity: 4, AmountTotal: amount(1800), Currency: "usd"},
	}, got.Lines, "each line of its order, in their order")
	got, err = postgres.GetOrder(ctx, pool, second.CheckoutSessionID)
	require.NoError(t, err)
	require.Equal(t, []order.PaidLine{{LineItemID: "li_c", PriceID: "price_7", ProductName: "Week key", Quantity: 1,
		UnitAmount: amount(199), AmountTotal: amount(199)}}, got.Lines)

	emails, err := postgres.EmailsOfOrder(ctx, pool, first.CheckoutSessionID)
	require.NoError(t, err)
	require.Len(t, emails, 2)
	require.Equal(t, []any{1, "sent", 2, ""}, []any{emails[0].Delivery, emails[0].Status, emails[0].Attempts, emails[0].LastError})
	require.Equal(t, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), emails[0].CreatedAt.UTC())
	require.NotNil(t, emails[0].SentAt)
	require.Equal(t, time.Date(2024, 1, 2, 3, 4, 9, 0, time.UTC), emails[0].SentAt.UTC())
	require.Equal(t, []any{2, "queued", 1, "smtp: 451 try later"}, []any{emails[1].Delivery, emails[1].Status, emails[1].Attempts, emails[1].LastError})
	require.Nil(t, emails[1].SentAt)
	emails, err = postgres.EmailsOfOrder(ctx, pool, second.CheckoutSessionID)
	require.NoError(t, err)
	require.Len(t, emails, 1)
	require.Equal(t, "failed", emails[0].Status)
	rows, err := pool.Query(ctx, `SELECT message_id FROM order_emails ORDER BY message_id`)
	require.NoError(t, err)
	messageIDs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"<one@shop.example>", "<three@shop.example>", "<two@shop.example>"}, messageIDs,
		"each delivery keeps its Message-ID, which a send cut off is sent again with")

	// The writers go on from the migrated rows: the next delivery is the
	// third, and a line recorded again is refreshed, not added.
	tx(t, pool, func(tx pgx.Tx) error {
		delivery, err := postgres.NextOrderEmail(ctx, tx, first.CheckoutSessionID, "<four@shop.example>")
		require.Equal(t, 3, delivery)
		return err
	})
	tx(t, pool, func(tx pgx.Tx) error {
		return postgres.RecordLines(ctx, tx, second.CheckoutSessionID, []order.PaidLine{{LineItemID: "li_c", PriceID: "price_7",
			ProductName: "Week key, renamed", Quantity: 1, UnitAmount: amount(199), AmountTotal: amount(199), Currency: "usd"}})
	})
	got, err = postgres.GetOrder(ctx, pool, second.CheckoutSessionID)
	require.NoError(t, err)
	require.Len(t, got.Lines, 1)
	require.Equal(t, "Week key, renamed", got.Lines[0].ProductName)
}

// Line items name their order by number: recording them for an order the
// database does not hold fails, saying so, instead of recording nothing.
func TestRecordLinesOfAnUnknownOrderFails(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		return postgres.RecordLines(context.Background(), tx, "cs_test_neverrecorded", []order.PaidLine{{LineItemID: "li_x",
			PriceID: "price_x", Quantity: 1}})
	})
	require.ErrorContains(t, err, "the order is not recorded")
}

// Migration 0070 keeps each uniqueness by a hash of the value: a second
// unit with a reference already held, a second outbound event with an ID
// already sent and a second grant of a unit from the same source are all
// refused, as they were by the values themselves.
func TestReferencesEventIDsAndGrantsStayUnique(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	units := replanOrder(t, pool, "cs_test_uniquerefs")
	unit := units["li_good/1"]
	var reference string
	require.NoError(t, pool.QueryRow(ctx, `SELECT reference FROM order_keys WHERE id = $1`, unit).Scan(&reference))
	_, err := pool.Exec(ctx, `UPDATE order_keys SET reference = $2 WHERE id = $1`, units["li_typo/1"], reference)
	requireUniqueViolation(t, err, "order_keys_reference_hash_key")

	_, err = pool.Exec(ctx, `INSERT INTO outbound_events (event_id, type, subject) VALUES ('evt_0123456789abcdef01234567', 'order.fulfilled', 'order:1')`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO outbound_events (event_id, type, subject) VALUES ('evt_0123456789abcdef01234567', 'order.fulfilled', 'order:2')`)
	requireUniqueViolation(t, err, "outbound_events_event_id_hash_key")

	var source string
	require.NoError(t, pool.QueryRow(ctx, `SELECT source FROM key_grants WHERE order_key_id = $1`, unit).Scan(&source))
	_, err = pool.Exec(ctx, `INSERT INTO key_grants (order_key_id, source, kind, valid_from) VALUES ($1, $2, 'days', 0)`, unit, source)
	requireUniqueViolation(t, err, "key_grants_pkey")
}

// requireUniqueViolation requires err to be a unique violation of index.
func requireUniqueViolation(t *testing.T, err error, index string) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "23505", pgErr.Code, "a unique violation: %v", err)
	require.Equal(t, index, pgErr.ConstraintName)
}
