// Package jobs holds the durable steps of fulfilment as River jobs: one args
// type and one worker per kind. Each step can run twice (a crash, a retry, a
// rescued job) and is written so the second run changes nothing.
//
// It is also the application layer that the HTTP handlers, the commands
// and the workers all call; its entry points:
//
//   - Orders (orders.go): the buyer's and the shop's requests: Confirm a
//     paid session from the success page, Retry a failed order, RetryFailed
//     at start-up, RequestHWIDReset, RequestKeyLookup, ResendOrderEmail.
//   - Support (support.go, support_lift.go): what an operator does: Order
//     and FindOrders, Retry, KeyAction (blacklist, unban, revoke, reissue,
//     reset-hwid, set-discord), LiftRevocation, and Wait/WaitLift for the
//     outcome.
//   - StockAdmin (stock_admin.go, stock_console.go): Levels, QueueRefill,
//     QueueReconcile, QueueDelete, Wait and LastReconcile.
//   - RecordSession (fulfil_order.go): the webhook's and reconciliation's
//     way in for a Checkout Session.
//
// Emails: the keys email is SendOrderEmailArgs (email.go), one delivery of
// an order's order_emails rows. The lifecycle emails that follow (a key
// reissued, a renewal unpaid, a cancellation, a revocation, access ending
// soon, a trial ending; internal/mail's Kind) share one generic job,
// SendLifecycleEmailArgs (lifecycle_emails.go), keyed by the
// lifecycle_emails row that the event's own transaction recorded: the row
// says which email and what for, so one worker with one exactly-once
// sending path serves every kind, and adding a kind adds a template and a
// case, not a job.
//
// Paid time: every change to what a key is paid for is a grant of its
// entitlement ledger (internal/entitlement, SQL in internal/postgres's
// ledger.go), and the one writer of a key's expiry and ban is
// SyncKeyWorker (sync_key.go): every other worker changes the ledger and
// queues it (syncUnits), none sends an expiry of its own. Support's
// blacklist, unban and revoke are ledger facts too (support.go); only a
// reissue's revocation of the key it replaced is sent by its own job, with
// the fact recorded in the same commit (support_key.go).
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/budget"
	"fulfiller/internal/catalog"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/mail"
	"fulfiller/internal/metrics"
	"fulfiller/internal/order"
	"fulfiller/internal/outbound"
	"fulfiller/internal/retention"
)

// Queues. Jobs that call Luarmor have a queue per budget class, so that a
// backlog of one class never keeps a more urgent job from being fetched;
// the fleet-wide budget (internal/budget) then orders their requests.
const (
	QueueDefault            = river.QueueDefault
	QueueEvents             = "events"
	QueueLuarmorRevoke      = "luarmor_revoke"
	QueueLuarmorDeliver     = "luarmor_deliver"
	QueueLuarmorRenew       = "luarmor_renew"
	QueueLuarmorMaintenance = "luarmor_maintenance"
)

// inFlight is the uniqueness window of jobs that may legitimately run again
// once finished (a fulfilment re-run after the catalog is fixed): only one
// waiting or running copy at a time.
var inFlight = []rivertype.JobState{
	rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
	rivertype.JobStateRunning, rivertype.JobStateScheduled,
}

// StripeReader is what fulfilment reads from Stripe's API, and the one
// write a revocation may make (cancelling a subscription).
type StripeReader interface {
	CheckoutSession(ctx context.Context, id string) (*stripe.CheckoutSession, error)
	CheckoutSessionToFulfil(ctx context.Context, id string) (*stripe.CheckoutSession, []*stripe.LineItem, error)
	LineItems(ctx context.Context, sessionID string) ([]*stripe.LineItem, error)
	Charge(ctx context.Context, id string) (*stripe.Charge, error)
	Invoice(ctx context.Context, id string) (*stripe.Invoice, error)
	InvoiceLines(ctx context.Context, invoiceID string) ([]*stripe.InvoiceLineItem, error)
	Subscription(ctx context.Context, id string) (*stripe.Subscription, error)
	Dispute(ctx context.Context, id string) (*stripe.Dispute, error)
	CancelSubscription(ctx context.Context, id string) (*stripe.Subscription, error)
}

// Luarmor is the part of the Luarmor API that the jobs call.
type Luarmor interface {
	CreateUser(ctx context.Context, projectID string, req luarmor.CreateUserRequest) (string, error)
	ListUsers(ctx context.Context, projectID string, opts luarmor.ListUsersOptions) ([]luarmor.User, error)
	GetUser(ctx context.Context, projectID, userKey string) (*luarmor.User, error)
	UpdateUser(ctx context.Context, projectID string, req luarmor.UpdateUserRequest) error
	DeleteUser(ctx context.Context, projectID, userKey string) error
	Blacklist(ctx context.Context, projectID string, req luarmor.BlacklistRequest) error
	Unban(ctx context.Context, projectID, unbanToken string) error
	ResetHWID(ctx context.Context, projectID string, req luarmor.ResetHWIDRequest) error
	LinkDiscord(ctx context.Context, projectID string, req luarmor.LinkDiscordRequest) error
}

// Deps are the workers' dependencies.
type Deps struct {
	Pool    *pgxpool.Pool
	Stripe  StripeReader
	Luarmor Luarmor
	Catalog *catalog.Catalog
	Logger  *slog.Logger
	// RateLimitWindow is how long a job waits after Luarmor answers 429:
	// the budget's window.
	RateLimitWindow time.Duration
	// Policy is the shop's key lifecycle policy; zero means the default.
	Policy order.Policy
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// StripeLivemode is the mode of the Stripe API key (LiveKey); events
	// of the other mode are refused.
	StripeLivemode bool
	// CreateLease is how long a unit's create lease lasts past each
	// request; 0 means the default, which outlives the Luarmor client's
	// timeout. Tests shorten it along with that timeout.
	CreateLease time.Duration
	// MaxUnitsPerOrder bounds the units of one order (MAX_UNITS_PER_ORDER);
	// 0 means DefaultMaxUnitsPerOrder.
	MaxUnitsPerOrder int
	// Mail sends the keys email of each fulfilled order; nil means mail
	// is off (SMTP_URL unset) and no email is queued.
	Mail *mail.Sender
	// Metrics counts job outcomes and keys delivered, revoked and
	// renewed; nil counts nothing.
	Metrics *metrics.Metrics
	// ProgressEvery is how often at most a long job records its progress
	// within a phase; 0 means DefaultProgressEvery. Tests shorten it.
	ProgressEvery time.Duration
	// Outbound is where events are sent (webhooks to the shop's backend,
	// Discord); nil sends none and records none.
	Outbound *outbound.Settings
	// Retention is how long prunable history is kept; zero means the
	// defaults.
	Retention retention.Settings
}

// Config tunes the River client.
type Config struct {
	// Workers is the number of concurrent jobs of the default queue.
	Workers int
	// FetchCooldown bounds how soon a new job is picked up after it is
	// inserted (River is notified of inserts and fetches at most this
	// often); 0 means fetchCooldown.
	FetchCooldown time.Duration
	// Insert only: build a client that inserts jobs but works none.
	InsertOnly bool
	// ID is the River client ID, recorded in river_job.attempted_by: the
	// replica's name, whose heartbeat says whether its jobs still run.
	ID string
	// Register adds the workers of packages that build on this one (and
	// so cannot be imported by it), such as reconciliation.
	Register func(*river.Workers)
	// Periodic are further periodic jobs, run by the leader with the
	// service's own.
	Periodic []*river.PeriodicJob
}

// InFlightStates are the job states in which a job waits or runs: a
// uniqueness window that lets one copy at a time exist.
func InFlightStates() []rivertype.JobState { return slices.Clone(inFlight) }

// NewClient returns a River client with every worker of the service.
func NewClient(deps Deps, cfg Config) (*river.Client[pgx.Tx], error) {
	return newClient(deps, cfg, &CreateKeyWorker{Deps: deps}, &RefillStockWorker{}, &StockKeyCheckWorker{})
}

func newClient(deps Deps, cfg Config, createKey *CreateKeyWorker, refill *RefillStockWorker, check *StockKeyCheckWorker) (*river.Client[pgx.Tx], error) {
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.RateLimitWindow <= 0 {
		deps.RateLimitWindow = time.Minute
	}
	if deps.Policy == (order.Policy{}) {
		deps.Policy = order.DefaultPolicy()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.CreateLease <= 0 {
		deps.CreateLease = createLease
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 10
	}
	if cfg.FetchCooldown <= 0 {
		cfg.FetchCooldown = fetchCooldown
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &HandleEventsWorker{Deps: deps})
	river.AddWorker(workers, &FulfilOrderWorker{Deps: deps})
	createKey.Deps = deps
	river.AddWorker(workers, createKey)
	river.AddWorker(workers, &RenewSubscriptionWorker{Deps: deps})
	river.AddWorker(workers, &ExtendKeyWorker{Deps: deps})
	river.AddWorker(workers, &SyncSubscriptionWorker{Deps: deps})
	river.AddWorker(workers, &ApplyKeyStateWorker{Deps: deps})
	river.AddWorker(workers, &SyncKeyWorker{Deps: deps})
	river.AddWorker(workers, &ResolveRevocationWorker{Deps: deps})
	river.AddWorker(workers, &RevokeKeyWorker{Deps: deps})
	river.AddWorker(workers, &LiftRevocationWorker{Deps: deps})
	river.AddWorker(workers, &UnbanKeyWorker{Deps: deps})
	river.AddWorker(workers, &ApplyDisputeWorker{Deps: deps})
	river.AddWorker(workers, &ApplyRefundWorker{Deps: deps})
	river.AddWorker(workers, &CancelSubscriptionWorker{Deps: deps})
	river.AddWorker(workers, &RefreshKeysWorker{Deps: deps})
	river.AddWorker(workers, &ResumeOrdersWorker{Deps: deps})
	river.AddWorker(workers, &WatchSubscriptionsWorker{Deps: deps})
	river.AddWorker(workers, &FoldOrderCountsWorker{Deps: deps})
	river.AddWorker(workers, &SendOrderEmailWorker{Deps: deps})
	river.AddWorker(workers, &SendLifecycleEmailWorker{Deps: deps})
	river.AddWorker(workers, &DeliverEventWorker{Deps: deps})
	river.AddWorker(workers, &QueueExpiryNoticesWorker{Deps: deps})
	river.AddWorker(workers, &ResetHWIDWorker{Deps: deps})
	river.AddWorker(workers, &SendKeyLookupEmailWorker{Deps: deps})
	river.AddWorker(workers, &SupportKeyWorker{Deps: deps})
	refill.Deps = deps
	river.AddWorker(workers, refill)
	check.Deps = deps
	river.AddWorker(workers, check)
	river.AddWorker(workers, &StockKeySoldWorker{Deps: deps})
	river.AddWorker(workers, &ReconcileStockWorker{Deps: deps})
	river.AddWorker(workers, &DeleteStockWorker{Deps: deps})
	river.AddWorker(workers, &PruneHistoryWorker{Deps: deps})
	if cfg.Register != nil {
		cfg.Register(workers)
	}

	rc := &river.Config{
		ID: cfg.ID,
		// River's own records: warnings and errors only, and each message
		// at most every 10 s (a database outage makes every fetch fail).
		// Job failures are logged by failureLogger instead.
		Logger:        logging.SampleByMessage(logging.AtLeast(deps.Logger, slog.LevelWarn), 10*time.Second),
		Workers:       workers,
		FetchCooldown: cfg.FetchCooldown,
		// River's default is 1 s; the poll only catches what no insert
		// notified (see fetchCooldown), so a quarter second bounds that
		// rare wait while idle producers poll a few times a second.
		FetchPollInterval: 250 * time.Millisecond,
		MaxAttempts:       maxAttempts,
		RetryPolicy:       RetryPolicy{},
		// failureLogger names the job itself; jobLogContext, inside it,
		// names it in what the worker logs.
		Middleware: []rivertype.Middleware{&failureLogger{logger: deps.Logger}, &metrics.JobOutcomes{Metrics: deps.Metrics}, &jobLogContext{}},
		JobTimeout: 2 * time.Minute,
		// Jobs of a replica that died are handed back within seconds by
		// Replica (its heartbeat stopped). River's own rescuer, which acts
		// on running time alone, stays as the backstop for a job hung on a
		// live replica: past the longest job timeout with a margin, never
		// before a live job's timeout (TestNoJobOutlivesItsRescue).
		RescueStuckJobsAfter: RescueStuckJobsAfter,
		// River deletes its finished jobs itself. A completed or cancelled
		// job's args are history the service's own rows hold (River's
		// defaults, a day); a discarded job gave up and waits for an
		// operator, who may be away longer than River's default week.
		CompletedJobRetentionPeriod: 24 * time.Hour,
		CancelledJobRetentionPeriod: 24 * time.Hour,
		DiscardedJobRetentionPeriod: 30 * 24 * time.Hour,
	}
	if !cfg.InsertOnly {
		// Luarmor workers wait in memory for their budget slot, so a few
		// per class keep the budget fully used without holding many jobs.
		// Deliveries get more: when the budget has room (a burst within
		// the minute's 60, or a larger LUARMOR_RATE_LIMIT), what bounds a
		// made-to-order spike is how many creates are in flight while
		// Luarmor answers: with 4, a hundred made-to-order purchases in a
		// second waited over a second for their keys (docs/benchmarks.md).
		rc.PeriodicJobs = append(append(periodicJobs(), StockPeriodicJobs(deps.Catalog)...), cfg.Periodic...)
		rc.Queues = map[string]river.QueueConfig{
			QueueEvents:             {MaxWorkers: cfg.Workers},
			QueueDefault:            {MaxWorkers: cfg.Workers},
			QueueOutbound:           {MaxWorkers: 4},
			QueueLuarmorRevoke:      {MaxWorkers: 2},
			QueueLuarmorDeliver:     {MaxWorkers: 16},
			QueueLuarmorRenew:       {MaxWorkers: 2},
			QueueLuarmorMaintenance: {MaxWorkers: 1},
			QueueLuarmorStock:       {MaxWorkers: 1},
		}
	}
	client, err := river.NewClient(riverpgxv5.New(deps.Pool), rc)
	if err != nil {
		return nil, fmt.Errorf("creating job client: %w", err)
	}
	return client, nil
}

// fetchCooldown is River's FetchCooldown (its default is 100 ms): a
// producer fetches at most this often, and, what matters more, a client
// notifies a queue of its inserts at most this often. A job inserted
// within the cooldown after another of its queue sends no notification,
// and if the fetch the first one woke ran before it committed, it waits
// for the poll (FetchPollInterval). A purchase's jobs follow each other
// within milliseconds, so at 10 ms one in a few waited a quarter second;
// at 2 ms the window is shorter than a job's commit, and fetches stay
// bounded at 500 a second per queue under a burst.
const fetchCooldown = 2 * time.Millisecond

// RescueStuckJobsAfter is when River hands a job still running on a live
// replica to another: five minutes past the longest job timeout (the stock
// deletion's and the stock reconciliation's 30 minutes).
const RescueStuckJobsAfter = 35 * time.Minute

// insertMany inserts jobs inside tx with the River client of the running
// job, or, in a job's own transaction (complete's jobTx), queues them to
// be inserted together when it commits.
func insertMany(ctx context.Context, tx pgx.Tx, args ...river.JobArgs) error {
	if len(args) == 0 {
		return nil
	}
	if jtx, ok := tx.(*jobTx); ok {
		jtx.queue(args...)
		return nil
	}
	params := make([]river.InsertManyParams, len(args))
	for i, a := range args {
		params[i] = river.InsertManyParams{Args: a}
	}
	return insertNow(ctx, tx, params)
}

// luarmorRetry decides what a failed Luarmor call means for a job that can
// simply be repeated: wait for the budget or the pause without using an
// attempt, retry transient failures with backoff, and report the rest.
// ok is false when the failure is permanent and the caller must decide.
func luarmorRetry(err error, window time.Duration) (jobErr error, ok bool) {
	var wait *budget.WaitError
	var rl *luarmor.RateLimitError
	switch {
	case errors.As(err, &wait):
		return river.JobSnooze(wait.RetryAfter), true
	case errors.As(err, &rl):
		return river.JobSnooze(window), true
	case luarmor.IsRetryable(err), errors.Is(err, luarmor.ErrUnauthorized):
		return err, true
	}
	return err, false
}
