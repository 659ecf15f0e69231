package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// OutcomeRateLimited is the outcome of a Luarmor request Luarmor answered
// 429 (luarmor_calls.outcome); the others are "ok" and "error", and NULL
// while the request is in flight.
const OutcomeRateLimited = "rate_limited"

// MinuteCalls counts the Luarmor requests whose slot was taken within one
// minute, fleet-wide.
type MinuteCalls struct {
	Minute time.Time
	Calls  int
	// RateLimited counts those Luarmor answered 429.
	RateLimited int
}

// LuarmorCallsPerMinute counts the Luarmor requests of each of the last
// minutes minutes (the current one last, so it is partial), an empty
// minute counted 0, on the database's clock as the slots are.
func LuarmorCallsPerMinute(ctx context.Context, db DB, minutes int) ([]MinuteCalls, error) {
	rows, err := db.Query(ctx, `
		SELECT m.minute, count(c.id), count(c.id) FILTER (WHERE c.outcome = $2)
		FROM generate_series(date_trunc('minute', now()) - ($1::int - 1) * interval '1 minute',
		                     date_trunc('minute', now()), interval '1 minute') AS m(minute)
		LEFT JOIN luarmor_calls c ON c.taken_at >= m.minute AND c.taken_at < m.minute + interval '1 minute'
		GROUP BY m.minute ORDER BY m.minute`, minutes, OutcomeRateLimited)
	if err != nil {
		return nil, fmt.Errorf("counting the Luarmor requests per minute: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (MinuteCalls, error) {
		var c MinuteCalls
		err := row.Scan(&c.Minute, &c.Calls, &c.RateLimited)
		return c, err
	})
}
