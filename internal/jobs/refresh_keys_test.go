package jobs_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/jobs"
	"fulfiller/internal/postgres"
)

func TestRefreshLearnsTheExpiryOnceTheKeyIsFirstUsed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client, err := jobs.NewClient(b.deps, jobs.Config{})
	require.NoError(t, err)
	w := b.start(t, client)
	b.purchase(t, client, "cs_test_refresh0001", 2)
	o := b.waitFulfilled(t, w, "cs_test_refresh0001")
	require.Nil(t, o.Keys[0].AuthExpire, "the timer waits for first use")

	// The buyer runs the script with the first key; the check is due.
	require.NoError(t, b.sandbox.Execute(project, o.Keys[0].UserKey, "hwid-1"))
	ctx := context.Background()
	_, err = b.pool.Exec(ctx, `UPDATE order_keys SET delivered_at = now() - interval '2 hours'`)
	require.NoError(t, err)
	run, err := client.Insert(ctx, jobs.RefreshKeysArgs{}, nil)
	require.NoError(t, err)

	want, _ := b.sandbox.User(project, o.Keys[0].UserKey)
	// The first key's expiry can be recorded before the second key is
	// looked up: read and count once the run is over.
	ended := waitJobs(t, w, run.Job.ID)[run.Job.ID]
	require.Equal(t, rivertype.JobStateCompleted, ended.State, "the refresh run completes")
	got, err := postgres.GetOrder(ctx, b.pool, "cs_test_refresh0001")
	require.NoError(t, err)
	require.NotNil(t, got.Keys[0].AuthExpire, "the used key's expiry is learnt")
	require.Equal(t, want.AuthExpire, *got.Keys[0].AuthExpire)
	require.Nil(t, got.Keys[1].AuthExpire, "the unused key still waits")
	require.Equal(t, 2, b.sandbox.CallCount(http.MethodGet, "/users"), "one look-up per key")
}
