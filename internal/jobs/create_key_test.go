package jobs_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/metrics"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

func TestCrashAfterLuarmorCallBeforeCommitFindsTheKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var crashes atomic.Int32
	client, err := jobs.NewClientWithCrash(b.deps, jobs.Config{}, func(ctx context.Context) error {
		if crashes.Add(1) == 1 {
			return errors.New("process killed after Luarmor created the key")
		}
		return nil
	})
	require.NoError(t, err)
	w := b.start(t, client)

	b.purchase(t, client, "cs_test_crash0001", 1)
	o := b.waitFulfilled(t, w, "cs_test_crash0001")

	require.Len(t, o.Keys, 1)
	require.Len(t, b.sandbox.Users(project), 1, "exactly one key exists in Luarmor")
	require.Equal(t, b.sandbox.Users(project)[0].UserKey, o.Keys[0].UserKey, "the recorded key is the one the crashed attempt created")
	require.Equal(t, 1, b.sandbox.CallCount(http.MethodPost, "/users"), "the retry did not create again")
	require.Equal(t, 1, b.sandbox.CallCount(http.MethodGet, "/users"), "the retry looked the key up once")
	require.Equal(t, 2, o.Keys[0].CreateAttempts, "each run claims an attempt before it may send a create")
	require.EqualValues(t, 1, crashes.Load(), "the retry delivered the found key without a second create")
}

func TestRateLimitedCreateWaitsWithoutUsingAnAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.sandbox.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultRateLimit, Times: 2})
	client, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	w := b.start(t, client)

	b.purchase(t, client, "cs_test_ratelimit01", 1)
	o := b.waitFulfilled(t, w, "cs_test_ratelimit01")
	require.Len(t, o.Keys, 1)
	require.Len(t, b.sandbox.Users(project), 1)

	created := rivertest.RequireInserted(context.Background(), t, b.driver(), jobs.CreateKeyArgs{},
		&rivertest.RequireInsertedOpts{State: rivertype.JobStateCompleted})
	require.Equal(t, 1, created.Attempt, "429s do not use attempts")
	require.Equal(t, 2, snoozes(t, created.JobRow))
}

func TestRepeatedJobsForOneUnitCreateOneKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	w := b.start(t, client)
	b.purchase(t, client, "cs_test_repeat0001", 3)
	o := b.waitFulfilled(t, w, "cs_test_repeat0001")

	// Every job kind runs again, as after a rescue or an operator's retry.
	ctx := context.Background()
	_, err = client.Insert(ctx, jobs.FulfilOrderArgs{OrderID: o.ID}, nil)
	require.NoError(t, err)
	for _, k := range o.Keys {
		_, err = client.Insert(ctx, jobs.CreateKeyArgs{OrderKeyID: k.ID}, nil)
		require.NoError(t, err)
	}
	waitNoJob(t, w, client, "every job completed", river.NewJobListParams().States(statesBut(rivertype.JobStateCompleted)...))

	again, err := postgres.GetOrder(ctx, b.pool, "cs_test_repeat0001")
	require.NoError(t, err)
	require.Equal(t, o.Keys, again.Keys)
	require.Len(t, b.sandbox.Users(project), 3)
	require.Equal(t, 3, b.sandbox.CallCount(http.MethodPost, "/users"))
}

// counter reads name{labels} from m's registry; 0 when not created yet.
func counter(t *testing.T, m *metrics.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	require.NoError(t, err)
	total := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, s := range f.GetMetric() {
			for k, v := range labels {
				match := false
				for _, l := range s.GetLabel() {
					match = match || (l.GetName() == k && l.GetValue() == v)
				}
				if !match {
					continue series
				}
			}
			if s.Counter != nil {
				total += s.GetCounter().GetValue()
			}
			if s.Histogram != nil {
				total += float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	return total
}

// A run cut off between Luarmor's answer and its commit is retried, finds
// the key and delivers it: the key is counted once, by the run whose
// commit recorded it, and each attempt once with its outcome.
func TestKeyDeliveredIsCountedOnceAcrossACrashedRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := metrics.New(metrics.Labels{})
	b.deps.Metrics = m
	var crashes atomic.Int32
	client, err := jobs.NewClientWithCrash(b.deps, jobs.Config{}, func(ctx context.Context) error {
		if crashes.Add(1) == 1 {
			return errors.New("process killed after Luarmor created the key")
		}
		return nil
	})
	require.NoError(t, err)
	w := b.start(t, client)

	b.purchase(t, client, "cs_test_metrics001", 1)
	// An attempt is counted before River records its outcome, so before
	// the job's event.
	w.WaitCompleted(t, "create_key", 1)
	o, err := postgres.GetOrder(context.Background(), b.pool, "cs_test_metrics001")
	require.NoError(t, err)
	require.Equal(t, order.StatusFulfilled, o.Status)
	require.Equal(t, 1.0, counter(t, m, "fulfiller_jobs_total", map[string]string{"kind": "create_key", "outcome": metrics.JobCompleted}))

	require.Equal(t, 1.0, counter(t, m, "fulfiller_keys_delivered_total", nil))
	require.Equal(t, 1.0, counter(t, m, "fulfiller_key_delivery_seconds", nil))
	require.Equal(t, 1.0, counter(t, m, "fulfiller_jobs_total", map[string]string{"kind": "create_key", "outcome": metrics.JobRetried}))
	require.Equal(t, 1.0, counter(t, m, "fulfiller_jobs_total", map[string]string{"kind": "fulfil_order", "outcome": metrics.JobCompleted}))
}
