package budget

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/postgres"
)

// Caller is the job whose Luarmor requests ctx carries (WithCaller): what
// the call log records of who sent a request and for which order.
type Caller struct {
	JobID   int64
	JobKind string
	Attempt int
	// OrderID and OrderKeyID name the order, or one of its units, the job
	// works for; zero when it names neither (the order is then found by
	// the key the request names, if any).
	OrderID, OrderKeyID int64
	// UserKey is the key the job works on, for a request that names none
	// itself (an unban names a token): recorded for that key's order.
	UserKey string
}

type callerKey struct{}

// WithCaller marks the Luarmor requests made with ctx as sent by c.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// WithCallerKey names the key the Luarmor requests made with ctx are
// about when a request names none itself (Caller.UserKey).
func WithCallerKey(ctx context.Context, userKey string) context.Context {
	c, _ := ctx.Value(callerKey{}).(Caller)
	c.UserKey = userKey
	return WithCaller(ctx, c)
}

// CallLog records each Luarmor request made for an order or a key in
// luarmor_call_log, for the console's timeline of the order. A request
// that names neither (a stock listing, the API key check) is not recorded.
type CallLog struct {
	Pool   *pgxpool.Pool
	Logger *slog.Logger
	failed logging.Sampled
}

// recordTimeout bounds the one INSERT of a request's record, made after
// its slot is freed and whatever became of the caller's context.
const recordTimeout = 2 * time.Second

// callTarget is what a request names: the project and key it is about,
// the key "" when it names none (a search, an unban by token).
type callTarget struct{ projectID, userKey string }

// record stores the request sent at sentAt that took took, answered with
// status (0: no answer) and ended in err. Its failure is logged, never
// returned: the request was made whether or not it is recorded.
func (l *CallLog) record(ctx context.Context, target callTarget, endpoint string, status int, sentAt time.Time, took time.Duration, err error) {
	caller, _ := ctx.Value(callerKey{}).(Caller)
	if target.userKey == "" {
		target.userKey = caller.UserKey
	}
	if target.userKey == "" && caller.OrderID == 0 && caller.OrderKeyID == 0 {
		return
	}
	c := postgres.LuarmorCall{SentAt: sentAt, Took: took, Endpoint: endpoint, Status: status, ErrorClass: errorClass(err),
		OrderID: caller.OrderID, JobID: caller.JobID, JobKind: caller.JobKind, JobAttempt: caller.Attempt}
	if target.userKey != "" {
		c.KeyTail = logging.MaskKey(target.userKey)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	owner := postgres.LuarmorCallOwner{OrderKeyID: caller.OrderKeyID, ProjectID: target.projectID, UserKey: target.userKey}
	if err := postgres.RecordLuarmorCall(ctx, l.Pool, c, owner); err != nil {
		logger := l.Logger
		if logger == nil {
			logger = slog.Default()
		}
		l.failed.Log(ctx, logger, slog.LevelWarn,
			"luarmor call log: a request was made but not recorded; the order's console timeline will miss it",
			"endpoint", endpoint, "error", err)
	}
}

// errorClass words what became of a request for the call log: "" when it
// succeeded.
func errorClass(err error) string {
	var rl *luarmor.RateLimitError
	var le *luarmor.Error
	var te *luarmor.TransportError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &rl):
		return "rate_limited"
	case errors.As(err, &le):
		return string(le.Code)
	case errors.As(err, &te) && errors.Is(te.Err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &te) && te.Sent:
		return "connection_lost"
	case errors.As(err, &te):
		return "not_sent"
	}
	return "error"
}
