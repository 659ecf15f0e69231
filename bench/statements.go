package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// statementCounts is what pg_stat_statements has counted of one database's
// statements at a moment: executions by statement (its normalized text,
// one entry per distinct text). The counts are kept in shared memory as
// each statement ends, so two samples bracket a window exactly (unlike
// pg_stat_database, which backends flush at most once a second).
type statementCounts map[string]int64

// statementsAvailable makes pg_stat_statements readable from the database
// of pool when the server preloads it (scripts/with-postgres
// --statements); false when it does not, and the runs then go without
// statement counts.
func statementsAvailable(ctx context.Context, pool *pgxpool.Pool) bool {
	if _, err := pool.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		return false
	}
	_, err := sampleStatements(ctx, pool)
	return err == nil
}

// sampleStatements reads pg_stat_statements' counts for the database of
// pool, every user's statements (the service's and its River client's)
// but its own.
func sampleStatements(ctx context.Context, pool *pgxpool.Pool) (statementCounts, error) {
	rows, err := pool.Query(ctx, `SELECT query, sum(calls)::bigint FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND query NOT LIKE '%pg_stat_statements%' GROUP BY query`)
	if err != nil {
		return nil, fmt.Errorf("reading pg_stat_statements: %w", err)
	}
	defer rows.Close()
	counts := statementCounts{}
	for rows.Next() {
		var q string
		var n int64
		if err := rows.Scan(&q, &n); err != nil {
			return nil, fmt.Errorf("reading pg_stat_statements: %w", err)
		}
		counts[q] += n
	}
	return counts, rows.Err()
}

// since is what ran between an earlier sample and this one.
func (c statementCounts) since(earlier statementCounts) statementCounts {
	out := statementCounts{}
	for q, n := range c {
		if d := n - earlier[q]; d > 0 {
			out[q] = d
		}
	}
	return out
}

// add counts other's statements in c.
func (c statementCounts) add(other statementCounts) {
	for q, n := range other {
		c[q] += n
	}
}

// total is every execution counted.
func (c statementCounts) total() int64 {
	var n int64
	for _, v := range c {
		n += v
	}
	return n
}

// commits counts the explicit transactions that committed (COMMIT, and
// RELEASE of a savepoint apart): a statement run alone outside BEGIN is
// its own transaction and not counted.
func (c statementCounts) commits() int64 {
	var n int64
	for q, v := range c {
		if strings.EqualFold(strings.TrimSpace(q), "commit") {
			n += v
		}
	}
	return n
}

// StatementCount is one statement's executions per purchase in a run.
type StatementCount struct {
	Statement   string  `json:"statement"`
	PerPurchase float64 `json:"per_purchase"`
}

// perPurchase lists the statements by executions per purchase, most first,
// their text shortened to one line.
func (c statementCounts) perPurchase(purchases int) []StatementCount {
	out := make([]StatementCount, 0, len(c))
	for q, n := range c {
		out = append(out, StatementCount{Statement: oneLine(q, 160), PerPurchase: float64(n) / float64(purchases)})
	}
	slices.SortFunc(out, func(a, b StatementCount) int {
		if a.PerPurchase != b.PerPurchase {
			if a.PerPurchase > b.PerPurchase {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Statement, b.Statement)
	})
	return out
}

// oneLine folds a statement's whitespace and cuts it at most runes.
func oneLine(q string, most int) string {
	s := strings.Join(strings.Fields(q), " ")
	if r := []rune(s); len(r) > most {
		s = string(r[:most]) + "…"
	}
	return s
}
