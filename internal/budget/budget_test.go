package budget_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/budget"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/postgres/postgrestest"
)

const project = "proj_budget"

type replica struct {
	budget *budget.Budget
	client *budget.Client
	pool   *pgxpool.Pool
}

type fleet struct {
	sandbox  *fulfillertest.Luarmor
	replicas []*replica
	pool     *pgxpool.Pool
	count    int
	window   time.Duration
}

// setup starts n replicas, each with its own pool and budget as separate
// processes would have, sharing one database and one sandbox that enforces
// the same budget.
func setup(t *testing.T, n, count int, window time.Duration) *fleet {
	t.Helper()
	sb := fulfillertest.StartLuarmor(t, sandbox.Options{Limit: count, Window: window})
	url := postgrestest.NewURL(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := &fleet{sandbox: sb, count: count, window: window}
	for i := 0; i < n; i++ {
		pool, err := pgxpool.New(context.Background(), url)
		require.NoError(t, err)
		t.Cleanup(pool.Close)
		// Run outlives the test by a moment after its context is
		// cancelled: it logs nowhere, not to the finished test.
		b := budget.New(pool, budget.Config{Count: count, Window: window, Replica: fmt.Sprintf("replica-%d", i),
			MaxCall: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
		go b.Run(ctx)
		f.replicas = append(f.replicas, &replica{budget: b, pool: pool, client: &budget.Client{
			Budget:  b,
			Luarmor: sb.Client(luarmor.WithTimeout(5 * time.Second)),
		}})
		if i == 0 {
			f.pool = pool
		}
	}
	return f
}

// maxInWindow is the most calls the sandbox received in any window, as
// Luarmor counts them: the calls in (t-window, t] at each call's time t.
func maxInWindow(calls []sandbox.Call, window time.Duration) int {
	times := make([]time.Time, len(calls))
	for i, c := range calls {
		times[i] = c.Time
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	most, lo := 0, 0
	for hi := range times {
		for !times[lo].After(times[hi].Add(-window)) {
			lo++
		}
		most = max(most, hi-lo+1)
	}
	return most
}

func status429(calls []sandbox.Call) int {
	n := 0
	for _, c := range calls {
		if c.Status == http.StatusTooManyRequests {
			n++
		}
	}
	return n
}

func TestFleetNeverExceedsTheWindow(t *testing.T) {
	t.Parallel()
	const count, perReplica = 15, 20
	f := setup(t, 3, count, time.Second)

	var wg sync.WaitGroup
	errs := make(chan error, 3*perReplica)
	for _, r := range f.replicas {
		for i := 0; i < perReplica; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := budget.WithClass(context.Background(), budget.ClassDeliver)
				_, err := r.client.CreateUser(ctx, project, luarmor.CreateUserRequest{Note: "fleet"})
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	calls := f.sandbox.Calls()
	require.Len(t, calls, 3*perReplica, "one request per key, none wasted")
	require.Zero(t, status429(calls))
	require.LessOrEqual(t, maxInWindow(calls, f.window), count)
	require.Len(t, f.sandbox.Users(project), 3*perReplica)
}

func TestRateLimitPausesEveryReplica(t *testing.T) {
	t.Parallel()
	const window = time.Second
	f := setup(t, 3, 1000, window)
	f.sandbox.InjectFault(sandbox.Fault{Kind: sandbox.FaultRateLimit, Times: 1})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	limited := 0
	for _, r := range f.replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each replica keeps calling until it has made calls after
			// the pause.
			for i := 0; i < 15 && ctx.Err() == nil; i++ {
				_, err := r.client.ListUsers(budget.WithClass(ctx, budget.ClassMaintenance), project, luarmor.ListUsersOptions{})
				var rl *luarmor.RateLimitError
				if err != nil {
					require.ErrorAs(t, err, &rl)
					mu.Lock()
					limited++
					mu.Unlock()
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 1, limited)

	calls := f.sandbox.Calls()
	var at time.Time
	for _, c := range calls {
		if c.Status == http.StatusTooManyRequests {
			at = c.Time
		}
	}
	require.False(t, at.IsZero())
	// Requests already granted when the 429 came back may still land just
	// after it; after that nothing until the window has passed.
	for _, c := range calls {
		if c.Time.After(at.Add(200*time.Millisecond)) && c.Time.Before(at.Add(window)) {
			t.Fatalf("a call %s after the 429 was sent during the pause", c.Time.Sub(at))
		}
	}
	after := 0
	for _, c := range calls {
		if !c.Time.Before(at.Add(window)) {
			after++
		}
	}
	require.GreaterOrEqual(t, after, 3, "every replica resumes after the pause")
	var paused int64
	require.NoError(t, f.pool.QueryRow(context.Background(), "SELECT rate_limits_received FROM luarmor_budget").Scan(&paused))
	require.EqualValues(t, 1, paused)
}

func TestRevocationWaitsAtMostOneSlotBehindRenewals(t *testing.T) {
	t.Parallel()
	const count = 4
	f := setup(t, 3, count, 400*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// 60 renewals wait across the three replicas, each released as soon
	// as it is granted, so the budget is contended throughout.
	var wg sync.WaitGroup
	for _, r := range f.replicas {
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				slot, err := r.budget.Acquire(budget.WithClass(ctx, budget.ClassRenew))
				if err != nil {
					return
				}
				slot.Done(ctx, nil)
			}()
		}
	}
	// Polled: the budget tells of no grant.
	require.Eventually(t, func() bool { return f.granted(t) >= 2*count }, 10*time.Second, 5*time.Millisecond,
		"renewals are being granted")

	var asked time.Time
	require.NoError(t, f.pool.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&asked))
	slot, err := f.replicas[1].budget.Acquire(budget.WithClass(ctx, budget.ClassRevoke))
	require.NoError(t, err)
	slot.Done(ctx, nil)

	var revokedAt time.Time
	require.NoError(t, f.pool.QueryRow(ctx, "SELECT taken_at FROM luarmor_calls WHERE class = 'revoke'").Scan(&revokedAt))
	var overtaken int
	require.NoError(t, f.pool.QueryRow(ctx,
		"SELECT count(*) FROM luarmor_calls WHERE class = 'renew' AND taken_at > $1 AND taken_at < $2", asked, revokedAt).Scan(&overtaken))
	require.LessOrEqual(t, overtaken, 1, "at most one renewal took a slot after the revocation asked")
	cancel()
	wg.Wait()
}

func (f *fleet) granted(t *testing.T) int {
	var n int
	require.NoError(t, f.pool.QueryRow(context.Background(), "SELECT count(*) FROM luarmor_calls").Scan(&n))
	return n
}

func TestAcquireGivesUpAfterMaxWaitAndReturnsNothing(t *testing.T) {
	t.Parallel()
	url := postgrestest.NewURL(t)
	pool, err := pgxpool.New(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	// MaxWait leaves the first request, on a busy machine, ample time for
	// its free slot; the second waits it out in full.
	b := budget.New(pool, budget.Config{Count: 1, Window: time.Hour, MaxWait: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.Run(ctx)

	first, err := b.Acquire(ctx)
	require.NoError(t, err)
	first.Done(ctx, nil)
	_, err = b.Acquire(ctx)
	var we *budget.WaitError
	require.ErrorAs(t, err, &we, "the only slot is busy for an hour")
	require.Positive(t, we.RetryAfter)
	require.Zero(t, b.Stats().Waiting[budget.ClassMaintenance])

	// A shutdown ends the wait the same way, so the job is snoozed, not failed.
	stopping, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	_, err = b.Acquire(stopping)
	require.ErrorAs(t, err, &we)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Zero(t, b.Stats().Waiting[budget.ClassMaintenance])
}

// A backlog from one caller at a time (no two requests waiting at once, as
// a fair deliver queue makes it) bursts only up to a quarter of the count;
// past that, slots are paced one per window/count, so a request that joins
// later waits a slot or two, not for the window to roll.
func TestBacklogIsPacedPastAQuarterOfTheWindow(t *testing.T) {
	t.Parallel()
	const count = 12
	window := 2 * time.Second
	f := setup(t, 1, count, window)
	r := f.replicas[0]
	ctx := budget.WithClass(context.Background(), budget.ClassDeliver)
	for i := 0; i < count; i++ {
		_, err := r.client.CreateUser(ctx, project, luarmor.CreateUserRequest{Note: "backlog"})
		require.NoError(t, err)
	}
	require.Len(t, f.sandbox.Calls(), count)
	// The budget's own grants: what pacing governs. The sandbox's receipt
	// times also carry the scheduling of a busy machine, which can bring
	// two paced calls closer than their grants were.
	rows, err := f.pool.Query(context.Background(), `SELECT taken_at FROM luarmor_calls ORDER BY taken_at`)
	require.NoError(t, err)
	granted, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	require.NoError(t, err)
	require.Len(t, granted, count)
	burst := 1
	for i := 1; i < len(granted) && granted[i].Sub(granted[0]) < window/count/2; i++ {
		burst++
	}
	require.LessOrEqual(t, burst, count/4+1, "at most a quarter of the window goes at once")
	for i := count/4 + 1; i < len(granted); i++ {
		gap := granted[i].Sub(granted[i-1])
		require.GreaterOrEqual(t, gap, window/count-20*time.Millisecond, "slot %d was granted %s after the one before", i, gap)
	}
	require.Less(t, granted[len(granted)-1].Sub(granted[0]), window, "the window's count still goes within the window")
}
