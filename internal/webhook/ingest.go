package webhook

import (
	"context"
	"sort"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"fulfiller/internal/jobs"
	"fulfiller/internal/postgres"
)

// ParseEvent validates and parses a raw event body: the checks the webhook
// applies once the signature holds. Events read from Stripe's API (which
// carry no signature) go through it too.
func ParseEvent(body []byte) (postgres.Event, error) { return parse(body) }

// RecordTx records events in tx and enqueues the job that acts on the new
// ones of a handled type; it reports, per event, whether it was new. An
// event recorded before enqueues nothing, so recording twice is harmless.
func RecordTx(ctx context.Context, tx pgx.Tx, rc *river.Client[pgx.Tx], events []postgres.Event) ([]bool, error) {
	isNew, err := postgres.RecordEvents(ctx, tx, events)
	if err != nil {
		return nil, err
	}
	// One job for the new events the service acts on, in the order of
	// their objects: two jobs that touch the same orders then lock them in
	// the same order and never deadlock. Events of one object keep their
	// order.
	var handled []postgres.Event
	for i, e := range events {
		if isNew[i] && e.Handled {
			handled = append(handled, e)
		}
	}
	sort.SliceStable(handled, func(i, j int) bool { return handled[i].ObjectID < handled[j].ObjectID })
	ids := make([]string, len(handled))
	for i, e := range handled {
		ids[i] = e.ID
	}
	if len(ids) > 0 {
		if _, err := rc.InsertTx(ctx, tx, jobs.HandleEventsArgs{EventIDs: ids}, nil); err != nil {
			return nil, err
		}
	}
	return isNew, nil
}
