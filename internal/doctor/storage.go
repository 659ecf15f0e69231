package doctor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// pruneSlack is how far past its age a body may be before the pruning job
// is taken for not running: it runs hourly, and a first run on a large
// backlog takes a few.
const pruneSlack = 2 * 24 * time.Hour

// storage reports, once the database check passed, the database's size and
// the oldest Stripe event body still stored, and warns when a body retention should have dropped is
// still there: the pruning job is not running.
func (d *Doctor) storage(ctx context.Context) Result {
	const check = "storage"
	age := d.Retention.WithDefaults().EventPayloadAge
	var size int64
	var oldest, oldestDone *time.Time
	err := d.Pool.QueryRow(ctx, `SELECT pg_database_size(current_database()),
		(SELECT min(received_at) FROM stripe_events WHERE payload IS NOT NULL),
		(SELECT min(received_at) FROM stripe_events WHERE payload IS NOT NULL AND (NOT handled OR NOT awaiting_handler))`).
		Scan(&size, &oldest, &oldestDone)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fail(check, "reading the database's size: %v", err)
	}
	msg := fmt.Sprintf("database %s", byteSize(size))
	if oldest == nil {
		return pass(check, "%s; no Stripe event body stored", msg)
	}
	now := d.Now()
	msg += fmt.Sprintf("; oldest Stripe event body stored %s old (kept %s, RETENTION_EVENT_PAYLOAD_DAYS)", days(now.Sub(*oldest)), days(age))
	if oldestDone != nil && now.Sub(*oldestDone) > age+pruneSlack {
		return warn(check, "%s: bodies of handled events %s old are still stored, so the hourly prune_history job is not running or keeps failing; look for it in the River UI and the log", msg, days(now.Sub(*oldestDone)))
	}
	if now.Sub(*oldest) > age+pruneSlack {
		msg += "; the older bodies belong to events still waiting for their handle_events job (given up? retry it in the River UI)"
	}
	return pass(check, "%s", msg)
}

// days renders d in whole days.
func days(d time.Duration) string {
	n := int(d / (24 * time.Hour))
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}

// byteSize renders n bytes in the largest unit that keeps a whole number.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
