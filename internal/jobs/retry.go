package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"fulfiller/internal/budget"
	"fulfiller/internal/logging"
)

// Retry timing. River's default (attempt⁴ seconds: 1, 16, 81, 256 s…)
// leaves a customer watching a spinner for minutes after three transient
// failures. Jobs here retry fast instead: 1 s doubling to 10 s, each with
// ±20% jitter so a fleet does not retry in step. The cap is low on purpose:
// at 35% of Luarmor calls failing, six failures in a row befall one key in
// a few hundred, and with a 30 s cap those alone cost it a minute. The fleet-wide budget, not
// backoff, protects Luarmor's rate, and waits for it are snoozes that use
// no attempt. After retryFastAttempts the delay doubles on to an hour, so
// a long outage (a revoked API key, Luarmor down) is still retried for
// days before maxAttempts gives up.
const (
	retryFirst        = time.Second
	retryFastCap      = 10 * time.Second
	retryFastAttempts = 20
	retrySlowCap      = time.Hour
	retryJitter       = 0.2
	maxAttempts       = 100
	// errorAfterAttempts: a job failing this often is logged at error.
	errorAfterAttempts = 5
)

// RetryPolicy is the service's River retry policy.
type RetryPolicy struct{}

// NextRetry schedules the next attempt after the job's latest error.
func (RetryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	return time.Now().Add(RetryDelay(len(job.Errors) + 1))
}

// RetryDelay is the wait before retrying after the n-th error (n ≥ 1).
func RetryDelay(n int) time.Duration {
	delay := retryFirst
	for i := 1; i < n && delay < retrySlowCap; i++ {
		delay *= 2
		if i < retryFastAttempts && delay > retryFastCap {
			delay = retryFastCap
		}
	}
	delay = min(delay, retrySlowCap)
	jitter := 1 + retryJitter*(2*rand.Float64()-1) //nolint:gosec // G404: retry jitter needs spread, not unpredictability
	return time.Duration(float64(delay) * jitter)
}

// failureLogger logs every failed job attempt: River reports them at a
// level the service filters out, and a key stuck behind a failing call must
// be visible. A failure that will be retried is a warning; from the
// errorAfterAttempts-th attempt on, or when the job gives up, an error.
type failureLogger struct {
	river.MiddlewareDefaults
	logger *slog.Logger
}

// jobRefs are the argument fields that name what a job works on; none of
// them grants access to anything.
type jobRefs struct {
	OrderKeyID int64  `json:"order_key_id"`
	OrderID    int64  `json:"order_id"`
	OrderRef   string `json:"order_ref"`
	RequestID  int64  `json:"request_id"`
	// CheckoutSessionID is in jobs queued before orders had numbers; it
	// is logged as its order's reference, never as itself.
	CheckoutSessionID string   `json:"checkout_session_id"`
	EventIDs          []string `json:"event_ids"`
	InvoiceID         string   `json:"invoice_id"`
	RevocationID      int64    `json:"revocation_id"`
}

func (m *failureLogger) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	err := doInner(ctx)
	if err == nil {
		return nil
	}
	var snooze *river.JobSnoozeError
	if errors.As(err, &snooze) {
		return err
	}
	attrs := []any{"job_id", job.ID, "kind", job.Kind, "attempt", job.Attempt, "max_attempts", job.MaxAttempts,
		"error", logging.ScrubSessionIDs(err.Error())}
	var refs jobRefs
	if json.Unmarshal(job.EncodedArgs, &refs) == nil {
		if refs.OrderKeyID != 0 {
			attrs = append(attrs, "order_key_id", refs.OrderKeyID)
		}
		if refs.OrderID != 0 {
			attrs = append(attrs, "order_id", refs.OrderID)
		}
		switch {
		case refs.OrderRef != "":
			attrs = append(attrs, "order_ref", refs.OrderRef)
		case refs.CheckoutSessionID != "":
			attrs = append(attrs, "order_ref", logging.OrderRef(refs.CheckoutSessionID))
		}
		if refs.RequestID != 0 {
			attrs = append(attrs, "request_id", refs.RequestID)
		}
		if len(refs.EventIDs) > 0 {
			attrs = append(attrs, "event_ids", refs.EventIDs)
		}
		if refs.InvoiceID != "" {
			attrs = append(attrs, "invoice_id", refs.InvoiceID)
		}
		if refs.RevocationID != 0 {
			attrs = append(attrs, "revocation_id", refs.RevocationID)
		}
	}
	var cancel *river.JobCancelError
	switch {
	case errors.As(err, &cancel):
		m.logger.ErrorContext(ctx, "job failed for good and was cancelled", attrs...)
	case job.Attempt >= job.MaxAttempts:
		m.logger.ErrorContext(ctx, "job failed its last attempt and was discarded; the periodic sweep queues its order again", attrs...)
	case job.Attempt >= errorAfterAttempts:
		m.logger.ErrorContext(ctx, "job keeps failing; will retry", append(attrs, "retry_in", RetryDelay(len(job.Errors)+1).Round(time.Second))...)
	default:
		m.logger.WarnContext(ctx, "job failed; will retry", attrs...)
	}
	return err
}

// jobLogContext names the job in every line its worker logs with the job's
// context (job_id and job_kind) and in the Luarmor call log's record of
// each request it sends (with the order its arguments name), set here
// once rather than at each call.
type jobLogContext struct {
	river.MiddlewareDefaults
}

func (*jobLogContext) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	ctx = logging.WithAttrs(ctx, slog.Int64("job_id", job.ID), slog.String("job_kind", job.Kind))
	// Jobs name an order by the argument names JobsOfOrder matches.
	var names struct {
		OrderID    int64 `json:"order_id"`
		OrderKeyID int64 `json:"order_key_id"`
	}
	_ = json.Unmarshal(job.EncodedArgs, &names) // a job naming neither is recorded by the key it calls about
	return doInner(budget.WithCaller(ctx, budget.Caller{JobID: job.ID, JobKind: job.Kind, Attempt: job.Attempt,
		OrderID: names.OrderID, OrderKeyID: names.OrderKeyID}))
}
