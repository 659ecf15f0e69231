package jobs_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/postgres"
)

// A runner cut off mid-create (its replica stopped beating, so its job was
// handed to another replica) while its request is still on its way: the
// second runner waits out the first one's lease instead of creating, and
// the unit gets one key.
func TestTwoRunnersOfOneUnitMakeOneKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deps.CreateLease = 3 * time.Second
	// The first create is slowed past the second runner's start.
	b.sandbox.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultLatency,
		Latency: 1500 * time.Millisecond, Times: 1})

	first, err := jobs.NewClient(b.deps, jobs.Config{ID: "replica-cut-off"})
	require.NoError(t, err)
	second, err := jobs.NewClient(b.deps, jobs.Config{ID: "replica-second"})
	require.NoError(t, err)
	w := fulfillertest.WatchJobs(t, first, second)
	fulfillertest.StartRiver(t, first)
	b.purchase(t, first, "cs_test_tworunners01", 1)
	// Polled: the sandbox tells of no request while it is in flight.
	require.Eventually(t, func() bool { return b.sandbox.CallCount(http.MethodPost, "/users") == 1 }, 10*time.Second, 5*time.Millisecond,
		"the first runner sends its create")

	// "replica-cut-off" never beat: its running job is handed back, and a
	// second replica takes it while the create is still in flight.
	fulfillertest.StartRiver(t, second)
	rescued, err := postgres.RescueOrphanedJobs(context.Background(), b.pool, time.Minute)
	require.NoError(t, err)
	require.Len(t, rescued, 1)
	require.Equal(t, "create_key", rescued[0].Kind)

	o := b.waitFulfilled(t, w, "cs_test_tworunners01")
	require.Len(t, o.Keys, 1)
	require.Len(t, b.sandbox.Users(project), 1, "exactly one key exists in Luarmor")
	require.Equal(t, b.sandbox.Users(project)[0].UserKey, o.Keys[0].UserKey)
	require.Equal(t, 1, b.sandbox.CallCount(http.MethodPost, "/users"), "the second runner never created")
	created := rivertest.RequireInserted(context.Background(), t, b.driver(), jobs.CreateKeyArgs{}, nil)
	require.GreaterOrEqual(t, snoozes(t, created.JobRow), 1, "the second runner waited out the first one's lease")
	waitNoJob(t, w, first, "no job left behind",
		river.NewJobListParams().States(statesBut(rivertype.JobStateCompleted, rivertype.JobStateCancelled)...))
}

// Jobs of a replica that beats are left alone; jobs of one that stopped
// beating (or never did) are handed back, with the reason in their errors.
func TestRescueOnlyTakesJobsOfStoppedReplicas(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	require.NoError(t, postgres.Heartbeat(ctx, b.pool, "alive"))
	require.NoError(t, postgres.Heartbeat(ctx, b.pool, "stale"))
	_, err := b.pool.Exec(ctx, `UPDATE replicas SET heartbeat_at = now() - interval '1 minute' WHERE name = 'stale'`)
	require.NoError(t, err)
	// The rows are written and read directly: River inserts no job as
	// running on a named replica, and rivertest reads no errors.
	insert := func(replica string) int64 {
		var id int64
		require.NoError(t, b.pool.QueryRow(ctx, `INSERT INTO river_job (kind, args, state, attempt, attempted_at, attempted_by, max_attempts, queue, priority)
			VALUES ('create_key', '{"order_key_id": 1}', 'running', 1, now(), ARRAY[$1], 25, 'default', 1) RETURNING id`, replica).Scan(&id))
		return id
	}
	alive, stale, unknown := insert("alive"), insert("stale"), insert("never-registered")

	rescued, err := postgres.RescueOrphanedJobs(ctx, b.pool, 10*time.Second)
	require.NoError(t, err)
	var ids []int64
	for _, j := range rescued {
		ids = append(ids, j.ID)
	}
	require.ElementsMatch(t, []int64{stale, unknown}, ids)

	var state, lastError string
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT state, errors[array_length(errors, 1)]->>'error' FROM river_job WHERE id = $1`, stale).Scan(&state, &lastError))
	require.Equal(t, "available", state)
	require.Contains(t, lastError, "replica stale stopped")
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT state FROM river_job WHERE id = $1`, alive).Scan(&state))
	require.Equal(t, "running", state)
}

func TestRetryDelaysAreShortCappedAndJittered(t *testing.T) {
	t.Parallel()
	within := func(n int, want time.Duration) {
		t.Helper()
		for i := 0; i < 50; i++ {
			d := jobs.RetryDelay(n)
			require.GreaterOrEqual(t, d, time.Duration(float64(want)*0.8), "delay after error %d", n)
			require.LessOrEqual(t, d, time.Duration(float64(want)*1.2), "delay after error %d", n)
		}
	}
	within(1, time.Second)
	within(2, 2*time.Second)
	within(3, 4*time.Second)
	within(4, 8*time.Second)
	within(5, 10*time.Second)
	within(20, 10*time.Second)
	within(21, 20*time.Second)
	within(22, 40*time.Second)
	within(40, time.Hour)
	// Jitter spreads a fleet's retries.
	seen := map[time.Duration]bool{}
	for i := 0; i < 20; i++ {
		seen[jobs.RetryDelay(4)] = true
	}
	require.Greater(t, len(seen), 10)
}
