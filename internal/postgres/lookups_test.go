package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/logging"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/retention"
)

// lookupHistoryOrders is the size of the history the look-ups are planned
// against: enough rows for the planner to prefer an index wherever one
// serves, few enough to seed in seconds.
const lookupHistoryOrders = 50_000

// largeTableRows: a table holding at least this many rows in the seeded
// history grows with orders, and must never be read whole by a look-up.
// Smaller ones (a few hundred revocations, the stock ready to sell) are
// read whole by the planner's choice, as cheaper than an index.
const largeTableRows = 10_000

// maxRowsDiscarded is how many rows a look-up may read and throw away
// (removed by a filter, a join filter or an index recheck, over all of a
// node's loops): a page of a few hundred, never a share of the history.
// A plan that walks an index in the order asked for and filters each row
// (an ORDER BY ... LIMIT whose filter the index does not serve) looks
// cheap to the planner and reads the whole table when the rows it wants
// are few or none.
const maxRowsDiscarded = 1_000

// lookupArgs gives each registered look-up (postgres.Lookups) the
// parameters the service passes it, taken from the seeded history: one
// argument list per way the service calls it. A look-up registered
// without an entry here fails the test until it has one.
func lookupArgs(h *postgrestest.History) map[string][][]any {
	args := namedLookupArgs(h)
	for _, l := range postgres.Lookups() {
		f, ok := postgres.FilterLookupOf(l.Name)
		if !ok {
			continue
		}
		// A filter with no value here leaves the look-up without
		// parameters, which the test reports.
		if a, ok := filterLookupArgs(h, f); ok {
			args[l.Name] = [][]any{a}
		}
	}
	return args
}

// filterLookupArgs are the parameters of a listing's variant for the
// filters f has, if each of them has a value here: the audit log's page
// in the console (50) or one order's entries; the delivery log's page in
// the console (50) or an order's log (at most 200, jobs.MaxDeliveries),
// from a page's end.
func filterLookupArgs(h *postgrestest.History, f postgres.FilterLookup) ([]any, bool) {
	values := map[string]map[string]any{
		"ListAudit": {"before": int64(h.Orders / 400), "order": h.OrderID},
		"ListOutboundDeliveries": {"before": int64(h.Orders / 2), "destination": "webhook",
			"type": "order.fulfilled", "order": h.OrderID},
	}[f.Listing]
	limit := 50
	if f.Listing == "ListOutboundDeliveries" && slices.Contains(f.Filters, "order") {
		limit = 200
	}
	complete := true
	args := f.Args([]any{limit}, func(filter string) any {
		v, ok := values[filter]
		complete = complete && ok
		return v
	})
	return args, complete
}

func namedLookupArgs(h *postgrestest.History) map[string][][]any {
	now := time.Now()
	const found = 100 // jobs.MaxFoundOrders
	return map[string][][]any{
		"SessionOfRef":      {{logging.OrderRef(h.SessionID)}},
		"GetOrder":          {{h.SessionID}},
		"GetOrder/keys":     {{h.SessionID}},
		"GetOrder/hwid":     {{h.SessionID}},
		"GetOrder/lines":    {{h.SessionID}},
		"GetOrder/discord":  {{h.SessionID}},
		"OwnKeyOf":          {{h.UserKey}},
		"OrdersOfKey":       {{h.UserKey, found}},
		"OrdersOfKeyTail":   {{h.UserKey[len(h.UserKey)-6:], found}},
		"OrdersOfDiscordID": {{h.DiscordID, found}},
		// find-my-keys and the searches by address: a buyer's, and one
		// nobody bought with (which must not read every order to say so).
		"OrdersOfEmail":          {{h.CustomerEmail, found}, {unknownEmail, found}},
		"HasOrdersOfEmail":       {{h.CustomerEmail}, {unknownEmail}},
		"OrdersOfCustomer":       {{h.CustomerID, found}},
		"ordersWithKeys/keys":    {{[]string{h.SessionID}}},
		"attachLines":            {{[]string{h.SessionID}}},
		"EventsAbout":            {{[]string{h.SessionID, h.PaymentIntentID}}, {[]string{h.ChargeID}}},
		"EmailsOfOrder":          {{h.SessionID}},
		"RevocationsOfOrder":     {{h.RevocationID, h.PaymentIntentID, ""}, {int64(0), "", h.SubscriptionID}},
		"ReissuesOfOrder":        {{h.SessionID}},
		"LifecycleEmailsOfOrder": {{h.OrderID}},

		// The order API, for a session the database has no order of.
		"CheckoutEventAwaitingHandler": {{h.SessionID}},
		// The console's overview: the figures of the day and the week, the
		// failed and the waiting orders (jobs.MaxOverviewOrders).
		"FiguresSince":                 {{now.Add(-24 * time.Hour)}, {now.Add(-7 * 24 * time.Hour)}},
		"OrdersInStatus/failed/count":  {{}},
		"OrdersInStatus/failed":        {{20}},
		"OrdersInStatus/pending/count": {{}},
		"OrdersInStatus/pending":       {{20}},
		"NewKeysDeliveredSince":        {{now.Add(-24 * time.Hour)}},
		// resume_orders, every minute.
		"StalledOrders/units":     {{"create_key", time.Minute, 100}},
		"StalledOrders/notLoaded": {{"fulfil_order", time.Minute, 100}},
		"StalledLedgerKeys":       {{"sync_key", time.Minute, time.Hour, 100}},
		// refresh_keys, every 5 minutes; watch_subscriptions, every 15;
		// the expiry notices, every hour (MAIL_EXPIRY_NOTICE_DAYS=3).
		"UnstartedKeys":            {{10, time.Hour}},
		"UnboundKeys":              {{10, time.Hour}},
		"SubscriptionsLapsingSoon": {{48 * time.Hour, 200}},
		// Each check takes a batch of the keys queued in its window and
		// lists, in the same statement, those of their Luarmor keys that
		// owe a notice: the first run after an upgrade, whose window holds
		// every seeded key expiring within three days.
		"ExpiringKeys":            {{now.Unix(), now.Add(3 * 24 * time.Hour).Unix(), 500}},
		"KeysExpiringUnannounced": {{now.Unix(), now.Add(3 * 24 * time.Hour).Unix(), 500}},
		// A paid invoice.
		"GrantRenewals": {{h.SubscriptionID}},
		// doctor's stock check, and a refill's progress.
		"SellableStock":      {{"proj_1", 30}},
		"StockActivitySince": {{"price_p1_30", now.Add(-24 * time.Hour)}},
		"RefillProgress":     {{"price_p1_30", "proj_1", 30, now.Add(-time.Hour)}},
		// Every metrics scrape; fold_order_counts, every minute.
		"OrderCounts":       {{}},
		"FailedOrderCounts": {{}},
		"StockLevels":       {{}},
		"FoldOrderCounts":   {{5000}},
		// prune_history, every hour: a batch at each kind's default age.
		"retention/stripe_event_payloads":      {{now.Add(-retention.DefaultEventPayloadAge), retention.DefaultBatchSize}},
		"retention/stripe_event_rows":          {{now.Add(-retention.DefaultEventIDAge), retention.DefaultBatchSize}},
		"retention/outbound_delivery_attempts": {{now.Add(-retention.DefaultDeliveryLogAge), retention.DefaultBatchSize}},
		"retention/outbound_deliveries":        {{now.Add(-retention.DefaultDeliveryLogAge), retention.DefaultBatchSize}},
		"retention/luarmor_call_log":           {{now.Add(-retention.DefaultCallLogAge), retention.DefaultBatchSize}},
	}
}

// unknownEmail is an address no seeded order was bought with.
const unknownEmail = "nobody-bought-with-this@example.org"

// plannedQueries is every query the test plans: the registered look-ups,
// and the prune statements of the prune_history job, which
// internal/retention keeps beside its settings (Prunables).
func plannedQueries() []postgres.Lookup {
	out := postgres.Lookups()
	for _, p := range retention.Prunables {
		out = append(out, postgres.Lookup{Name: "retention/" + p.Kind, SQL: p.SQL})
	}
	return out
}

// TestLookupsReadIndexes runs every look-up the service runs on a look-up
// or periodic path against three years of a busy shop's history (EXPLAIN
// ANALYZE, in a transaction rolled back, as the prune statements and
// FoldOrderCounts write), and fails on each plan that reads a large table
// whole: a sequential scan, an index read from end to end, or a node that
// reads and discards more than maxRowsDiscarded rows.
func TestLookupsReadIndexes(t *testing.T) {
	ctx := context.Background()
	pool, h := postgrestest.NewHistoryPool(t, lookupHistoryOrders)
	large := largeTables(t, pool)
	require.Contains(t, large, "orders", "the seeded history should make orders a large table")
	indexes := indexesOf(t, pool)
	args := lookupArgs(h)

	registered := map[string]bool{}
	for _, l := range plannedQueries() {
		require.False(t, registered[l.Name], "look-up %s is registered twice", l.Name)
		registered[l.Name] = true
		calls, ok := args[l.Name]
		if !ok {
			t.Errorf("look-up %s has no parameters: add how the service calls it to lookupArgs", l.Name)
			continue
		}
		for _, a := range calls {
			plan, err := explain(ctx, pool, "json", l.SQL, a)
			if err != nil {
				t.Errorf("look-up %s: running it with %v: %v", l.Name, a, err)
				continue
			}
			var root struct {
				Plan planNode `json:"Plan"`
			}
			require.NoError(t, json.Unmarshal([]byte(plan), &root))
			faults := root.Plan.wholeReads(large, indexes, false)
			faults = append(faults, root.Plan.discards()...)
			if len(faults) > 0 {
				text, err := explain(ctx, pool, "text", l.SQL, a)
				if err != nil {
					text = err.Error()
				}
				t.Errorf("look-up %s with %v reads a large table whole (%s):\n%s\nplan:\n%s",
					l.Name, a, strings.Join(faults, "; "), l.SQL, text)
			}
		}
	}
	for name := range args {
		if !registered[name] {
			t.Errorf("lookupArgs names %s, which no look-up registers: drop it or register the query", name)
		}
	}
}

// TestOrderRefMatchesTheLogs holds PostgreSQL's order_ref to the
// reference the logs name orders by.
func TestOrderRefMatchesTheLogs(t *testing.T) {
	pool := postgrestest.NewPool(t)
	for _, id := range []string{"cs_test_a1", "cs_live_b1Zx9" + strings.Repeat("q", 50), "cs_test_é"} {
		var ref string
		require.NoError(t, pool.QueryRow(context.Background(), "SELECT order_ref($1)", id).Scan(&ref))
		require.Equal(t, logging.OrderRef(id), ref, "order_ref(%q)", id)
	}
}

// planNode is a node of EXPLAIN (FORMAT JSON)'s plan.
type planNode struct {
	NodeType  string     `json:"Node Type"`
	Relation  string     `json:"Relation Name"`
	Index     string     `json:"Index Name"`
	IndexCond string     `json:"Index Cond"`
	Plans     []planNode `json:"Plans"`
	// EXPLAIN ANALYZE's counts, each an average over the node's loops.
	Loops            float64 `json:"Actual Loops"`
	RemovedByFilter  float64 `json:"Rows Removed by Filter"`
	RemovedByJoin    float64 `json:"Rows Removed by Join Filter"`
	RemovedByRecheck float64 `json:"Rows Removed by Index Recheck"`
}

// discards lists the nodes of the plan that read and threw away more than
// maxRowsDiscarded rows over all their loops.
func (n planNode) discards() []string {
	var out []string
	for _, d := range []struct {
		what string
		rows float64
	}{{"its filter", n.RemovedByFilter}, {"its join filter", n.RemovedByJoin}, {"its index recheck", n.RemovedByRecheck}} {
		if total := d.rows * max(n.Loops, 1); total > maxRowsDiscarded {
			on := n.Relation
			if n.Index != "" {
				on = "index " + n.Index
			}
			out = append(out, fmt.Sprintf("%s %s discards %.0f rows by %s", n.NodeType, on, total, d.what))
		}
	}
	for _, c := range n.Plans {
		out = append(out, c.discards()...)
	}
	return out
}

// indexInfo is what the test needs of an index: its table, its first
// column (or expression) as EXPLAIN prints it, and whether it is partial.
type indexInfo struct {
	table, first string
	partial      bool
}

// wholeReads lists the node's reads of a large table whole: a sequential
// scan (parallel or not), an index scan whose condition leaves the
// index's first column free, or a full index scan of a whole index outside
// a LIMIT (a partial index holds few rows by design; under a LIMIT the
// scan stops after a page of them).
func (n planNode) wholeReads(large map[string]bool, indexes map[string]indexInfo, limited bool) []string {
	var out []string
	switch n.NodeType {
	case "Seq Scan":
		if large[n.Relation] {
			out = append(out, "sequential scan of "+n.Relation)
		}
	case "Index Scan", "Index Only Scan", "Bitmap Index Scan":
		ix, ok := indexes[n.Index]
		if !ok || !large[ix.table] {
			break
		}
		switch {
		case n.IndexCond == "" && !ix.partial && !limited:
			out = append(out, fmt.Sprintf("all of index %s of %s", n.Index, ix.table))
		case n.IndexCond != "" && !mentions(n.IndexCond, ix.first):
			out = append(out, fmt.Sprintf("index %s of %s without its first column %s", n.Index, ix.table, ix.first))
		}
	}
	limited = limited || n.NodeType == "Limit"
	for _, c := range n.Plans {
		out = append(out, c.wholeReads(large, indexes, limited)...)
	}
	return out
}

// mentions reports whether an index condition constrains column (a name,
// or an expression as PostgreSQL prints it).
func mentions(cond, column string) bool {
	if regexp.MustCompile(`^\w+$`).MatchString(column) {
		return regexp.MustCompile(`(^|[^\w.])(\w+\.)?` + column + `\b`).MatchString(cond)
	}
	return strings.Contains(cond, column)
}

// largeTables names the tables of the seeded history with at least
// largeTableRows rows.
func largeTables(t *testing.T, pool *pgxpool.Pool) map[string]bool {
	rows, err := pool.Query(context.Background(), `SELECT relname FROM pg_class
		WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace AND reltuples >= $1`, largeTableRows)
	require.NoError(t, err)
	var names []string
	for rows.Next() {
		var name string
		require.NoError(t, rows.Scan(&name))
		names = append(names, name)
	}
	require.NoError(t, rows.Err())
	slices.Sort(names)
	t.Logf("large tables: %s", strings.Join(names, ", "))
	out := map[string]bool{}
	for _, name := range names {
		out[name] = true
	}
	return out
}

// indexesOf describes every index of the schema.
func indexesOf(t *testing.T, pool *pgxpool.Pool) map[string]indexInfo {
	rows, err := pool.Query(context.Background(), `SELECT c.relname, t.relname, pg_get_indexdef(i.indexrelid, 1, true), i.indpred IS NOT NULL
		FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
		WHERE t.relnamespace = 'public'::regnamespace`)
	require.NoError(t, err)
	out := map[string]indexInfo{}
	for rows.Next() {
		var name string
		var ix indexInfo
		require.NoError(t, rows.Scan(&name, &ix.table, &ix.first, &ix.partial))
		out[name] = ix
	}
	require.NoError(t, rows.Err())
	return out
}

// explain runs sql with args as the service does (a prepared statement on a
// connection set up as the service's are: generic plans, see
// postgres.ConfigureSession) in a transaction it rolls back, so that a
// statement that writes leaves the history as it was, and returns the plan
// it ran, with its counts (auto_explain's, in format "json" or "text").
// EXPLAIN of the statement's text would plan it for its parameters'
// values, which the service's connections never do.
func explain(ctx context.Context, pool *pgxpool.Pool, format, sql string, args []any) (string, error) {
	cfg := pool.Config().ConnConfig.Copy()
	postgres.ConfigureSession(cfg)
	var plans []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if _, plan, ok := strings.Cut(n.Message, "plan:\n"); ok {
			plans = append(plans, plan)
		}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	for _, set := range []string{"LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
		"SET auto_explain.log_analyze = on", "SET auto_explain.log_format = " + format,
		"SET auto_explain.log_level = notice"} {
		if _, err := conn.Exec(ctx, set); err != nil {
			return "", fmt.Errorf("%s: %w", set, err)
		}
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return "", err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	plans = nil
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return "", err
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", err
	}
	// The plan is reported when the statement's portal is dropped: at the
	// end of the transaction, for the unnamed portal a query runs in.
	if err := tx.Rollback(ctx); err != nil {
		return "", err
	}
	if len(plans) == 0 {
		return "", errors.New("auto_explain reported no plan")
	}
	return plans[len(plans)-1], nil
}
