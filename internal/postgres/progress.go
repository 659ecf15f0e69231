package postgres

import (
	"context"
	"fmt"

	"fulfiller/internal/logging"
)

// KeysMadeAlongside counts the keys of other orders that the deliver queue
// makes while the order of sessionID waits for its remaining keys. The
// queue serves orders being delivered round-robin (QueueUnits), so each
// such order takes about as many turns as it has keys left, but no more
// than remaining. It reads the pending units only (order_keys_unqueued_idx),
// so its cost follows the backlog, not the history.
func KeysMadeAlongside(ctx context.Context, db DB, sessionID string, remaining int) (int, error) {
	var n int
	err := db.QueryRow(ctx, `
		SELECT COALESCE(sum(LEAST(left_to_make, $2)), 0)::int FROM (
			SELECT count(*) AS left_to_make
			FROM order_keys k JOIN orders o ON o.checkout_session_id = k.checkout_session_id
			WHERE k.status = 'pending' AND o.status = 'pending' AND k.checkout_session_id <> $1
			GROUP BY k.checkout_session_id
			HAVING count(*) FILTER (WHERE k.queued_at IS NOT NULL) > 0
		) being_delivered`, sessionID, remaining).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting the keys queued beside order %s: %w", logging.OrderRef(sessionID), err)
	}
	return n, nil
}
