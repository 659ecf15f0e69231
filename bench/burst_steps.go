package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"fulfiller/internal/jobs"
)

// purchaseSteps is where the time of each purchase went, whichever path
// delivered its key: the webhook's answer, the handle_events job that
// recorded its checkout event (started, and done: River stamps finalized_at
// when the job's completion is written, just before its commit), the
// create_key job of its first unit when one made the key, the key
// recorded (delivered_at, the delivering transaction's start), and the poll
// that showed it. Every step is measured from the webhook sent; a step no
// purchase of the run went through (create_key for stocked sales) is left
// out.
func purchaseSteps(ctx context.Context, svc *service, timings []timing) ([]milestone, error) {
	ids := make([]string, len(timings))
	for i, t := range timings {
		ids[i] = t.sessionID
	}
	rows, err := svc.main.Pool.Query(ctx, `
		SELECT o.checkout_session_id, h.attempted_at, h.finalized_at, c.attempted_at, k.delivered_at
		FROM orders o
		JOIN LATERAL (SELECT id, delivered_at FROM order_keys WHERE checkout_session_id = o.checkout_session_id
		              ORDER BY id LIMIT 1) k ON true
		JOIN LATERAL (SELECT j.attempted_at, j.finalized_at FROM stripe_events e
		              JOIN river_job j ON j.kind = $2 AND j.args->'event_ids' ? e.id
		              WHERE e.object_id = o.checkout_session_id AND e.type = 'checkout.session.completed'
		              ORDER BY j.id LIMIT 1) h ON true
		LEFT JOIN river_job c ON c.kind = $3 AND (c.args->>'order_key_id')::bigint = k.id
		WHERE o.checkout_session_id = ANY($1)`, ids, jobs.HandleEventsArgs{}.Kind(), jobs.CreateKeyArgs{}.Kind())
	if err != nil {
		return nil, fmt.Errorf("reading job timings: %w", err)
	}
	defer rows.Close()
	type stamps struct{ handleStart, handleDone, createStart, keyStored *time.Time }
	byID := map[string]stamps{}
	for rows.Next() {
		var id string
		var s stamps
		if err := rows.Scan(&id, &s.handleStart, &s.handleDone, &s.createStart, &s.keyStored); err != nil {
			return nil, fmt.Errorf("reading job timings: %w", err)
		}
		byID[id] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading job timings: %w", err)
	}

	names := []string{"webhook answered", "handle_events started", "handle_events done",
		"create_key started", "key recorded", "key seen by the poll"}
	series := make([][]time.Duration, len(names))
	for _, t := range timings {
		s, ok := byID[t.sessionID]
		if !ok {
			return nil, fmt.Errorf("reading job timings: no handle_events job found for %s's checkout event", t.sessionID)
		}
		since := func(at *time.Time) *time.Duration {
			if at == nil {
				return nil
			}
			d := at.Sub(t.sent)
			return &d
		}
		for i, d := range []*time.Duration{&t.answered, since(s.handleStart), since(s.handleDone),
			since(s.createStart), since(s.keyStored), &t.seen} {
			if d != nil {
				series[i] = append(series[i], *d)
			}
		}
	}
	var out []milestone
	for i, name := range names {
		if len(series[i]) == 0 {
			continue
		}
		slices.Sort(series[i])
		out = append(out, milestone{Name: name, Median: percentile(series[i], 50), P99: percentile(series[i], 99)})
	}
	return out, nil
}
