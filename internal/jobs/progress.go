package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// Progress is how far a long operation (a stock refill, reconciliation or
// deletion, a reconciliation of Stripe's events) has got. Its job records
// it as its output while it runs (ProgressOutput), where `fulfiller follow`
// and GET /v1/admin/progress read it. Done is counted from the work's own
// state (the keys made or deleted since the job was queued, what this
// attempt listed), never added to what an earlier attempt recorded, so a
// job cut off and retried counts each thing once.
type Progress struct {
	// Phase says what the operation is doing now, in words.
	Phase string `json:"phase"`
	Done  int    `json:"done"`
	// Total is 0 while it is not known.
	Total int `json:"total"`
	// Unit names what Done counts, as in "37/100 keys made".
	Unit      string    `json:"unit"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Finished says Done reached a known Total.
func (p Progress) Finished() bool { return p.Total > 0 && p.Done >= p.Total }

// ProgressOutput is a long operation's job output while it runs; once it
// completes, the output is the operation's summary, with the last count
// under the same "progress" (ProgressRecorder.WithLastCount; a refill's
// output stays its last count).
type ProgressOutput struct {
	Progress *Progress `json:"progress,omitempty"`
}

// ProgressOf reads the progress recorded in a job's output, also the last
// count a completed operation's summary carries; nil when none is.
func ProgressOf(job *rivertype.JobRow) *Progress {
	raw := job.Output()
	if len(raw) == 0 {
		return nil
	}
	var out ProgressOutput
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil
	}
	return out.Progress
}

// DefaultProgressEvery is how often at most a long job records its
// progress between phase changes: often enough for a progress line, rare
// enough to cost nothing next to the Luarmor calls it reports.
const DefaultProgressEvery = time.Second

// ProgressRecorder records one job's progress as its output. The zero of
// its client (a worker called outside River, as some tests do) records
// nothing.
type ProgressRecorder struct {
	client *river.Client[pgx.Tx]
	jobID  int64
	every  time.Duration
	logger *slog.Logger
	last   Progress
	lastAt time.Time
}

// NewProgressRecorder records the progress of the job ctx is working;
// every is the least time between two records of one phase (0 means
// DefaultProgressEvery).
func NewProgressRecorder(ctx context.Context, jobID int64, every time.Duration, logger *slog.Logger) *ProgressRecorder {
	client, _ := river.ClientFromContextSafely[pgx.Tx](ctx)
	if every <= 0 {
		every = DefaultProgressEvery
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &ProgressRecorder{client: client, jobID: jobID, every: every, logger: logger}
}

func (d Deps) progressRecorder(ctx context.Context, job *rivertype.JobRow) *ProgressRecorder {
	return NewProgressRecorder(ctx, job.ID, d.ProgressEvery, d.Logger)
}

// due says p is worth a write: its phase or total changed, it finished,
// or every has passed since the last write of a different count.
func (r *ProgressRecorder) due(p Progress) bool {
	if r == nil || r.client == nil {
		return false
	}
	last := r.last
	switch {
	case r.lastAt.IsZero() || p.Phase != last.Phase || p.Total != last.Total || p.Unit != last.Unit:
		return true
	case p.Done == last.Done:
		return false
	case p.Finished():
		return true
	}
	return time.Since(r.lastAt) >= r.every
}

// RecordTx records p in tx, the transaction of the work it counts, when it
// is due.
func (r *ProgressRecorder) RecordTx(ctx context.Context, tx pgx.Tx, p Progress) error {
	if !r.due(p) {
		return nil
	}
	p.UpdatedAt = time.Now().UTC()
	if _, err := r.client.JobUpdateTx(ctx, tx, r.jobID, &river.JobUpdateParams{Output: ProgressOutput{Progress: &p}}); err != nil {
		return fmt.Errorf("recording the progress of job %d: %w", r.jobID, err)
	}
	r.last, r.lastAt = p, time.Now()
	return nil
}

// Record records p on its own when it is due. Progress is for the
// operator's eyes only, so a failure is logged and the work goes on.
func (r *ProgressRecorder) Record(ctx context.Context, p Progress) {
	if !r.due(p) {
		return
	}
	p.UpdatedAt = time.Now().UTC()
	if _, err := r.client.JobUpdate(ctx, r.jobID, &river.JobUpdateParams{Output: ProgressOutput{Progress: &p}}); err != nil {
		r.logger.WarnContext(ctx, "recording a job's progress failed; the work goes on", "job_id", r.jobID, "error", err)
		return
	}
	r.last, r.lastAt = p, time.Now()
}

// WithLastCount is sum, an operation's summary recorded as its job's
// output once it completes, with the last count recorded while it ran
// ("progress", as ProgressOutput has it): a reader that missed that count
// between two reads (`fulfiller follow`) still shows where the operation
// ended. sum must encode as a JSON object.
func (r *ProgressRecorder) WithLastCount(sum any) (json.RawMessage, error) {
	out, err := json.Marshal(sum)
	if err != nil || r == nil || r.lastAt.IsZero() {
		return out, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(out, &fields); err != nil {
		return nil, fmt.Errorf("adding the last count to a summary that is no JSON object: %w", err)
	}
	last := r.last
	last.UpdatedAt = r.lastAt.UTC()
	if fields["progress"], err = json.Marshal(last); err != nil {
		return nil, err
	}
	return json.Marshal(fields)
}

// KindReconcileEvents is the kind of the reconciliation with Stripe's
// events (package reconcile), a long operation of its own.
const KindReconcileEvents = "reconcile_events"

// longOperationKinds are the jobs whose progress GET /v1/admin/progress
// lists.
var longOperationKinds = []string{
	RefillStockArgs{}.Kind(), ReconcileStockArgs{}.Kind(), DeleteStockArgs{}.Kind(), KindReconcileEvents,
}

// LongOperation is a long operation waiting or running, as the admin API
// lists it.
type LongOperation struct {
	JobID int64  `json:"job_id"`
	Kind  string `json:"kind"`
	// PriceID is the price of a stock refill or deletion.
	PriceID string `json:"price_id,omitempty"`
	// Actor is the operator who asked; "" for a periodic run.
	Actor    string    `json:"actor,omitempty"`
	State    string    `json:"state"`
	Attempt  int       `json:"attempt"`
	QueuedAt time.Time `json:"queued_at"`
	// Progress is nil until the job records some.
	Progress *Progress `json:"progress"`
}

// LongOperations lists the long operations waiting or running, oldest
// first.
func LongOperations(ctx context.Context, client *river.Client[pgx.Tx]) ([]LongOperation, error) {
	res, err := client.JobList(ctx, river.NewJobListParams().Kinds(longOperationKinds...).States(inFlight...).First(1000))
	if err != nil {
		return nil, fmt.Errorf("listing the long operations' jobs: %w", err)
	}
	out := make([]LongOperation, 0, len(res.Jobs))
	for _, j := range res.Jobs {
		var args struct {
			PriceID string `json:"price_id"`
			Actor   string `json:"actor"`
		}
		_ = json.Unmarshal(j.EncodedArgs, &args)
		out = append(out, LongOperation{JobID: j.ID, Kind: j.Kind, PriceID: args.PriceID, Actor: args.Actor,
			State: string(j.State), Attempt: j.Attempt, QueuedAt: j.CreatedAt.UTC(), Progress: ProgressOf(j)})
	}
	slices.SortFunc(out, func(a, b LongOperation) int { return a.QueuedAt.Compare(b.QueuedAt) })
	return out, nil
}
