package doctor_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/doctor"
)

// offline is a doctor whose every service setting is at fault: its run
// calls nothing, and says so on each line.
func offline() *doctor.Doctor {
	var bad config.Errors
	for _, name := range []string{"DATABASE_URL", "LUARMOR_BASE_URL", "LUARMOR_API_KEY", "STRIPE_API_KEY", "STRIPE_API_BASE",
		"STRIPE_WEBHOOK_SECRET", "PUBLIC_BASE_URL"} {
		bad = append(bad, &config.Error{Name: name, Reason: "is required"})
	}
	return &doctor.Doctor{Settings: bad, CatalogErr: errors.New("catalog.yaml: no such file")}
}

// The console's checks run when asked and not otherwise: reading the last
// report runs nothing, a second request while one runs joins it, and the
// report keeps who asked and when.
func TestChecksRunOnDemandAndKeepTheLastReport(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	release := make(chan struct{})
	checks := &doctor.Checks{New: func(context.Context) *doctor.Doctor {
		runs.Add(1)
		<-release
		return offline()
	}}
	last, running := checks.Last()
	require.Nil(t, last, "nothing runs until asked")
	require.Nil(t, running)

	first := checks.Start("admin:ops")
	joined := checks.Start("admin:other")
	require.Same(t, first, joined, "asking while a run is under way joins it")
	_, running = checks.Last()
	require.Same(t, first, running)
	close(release)
	select {
	case <-first.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the run did not finish")
	}
	last, running = checks.Last()
	require.Nil(t, running)
	require.NotNil(t, last)
	require.Equal(t, "admin:ops", last.By)
	require.WithinDuration(t, time.Now(), last.At, time.Minute)
	require.Equal(t, offline().Run(context.Background()), last.Results)
	ok, warned, failed := last.Counts()
	require.Equal(t, len(last.Results), ok+warned+failed)
	require.NotZero(t, failed)

	for range 3 {
		again, _ := checks.Last()
		require.Same(t, last, again)
	}
	require.EqualValues(t, 1, runs.Load(), "reading the report runs nothing again")

	next := checks.Start("admin:ops")
	<-next.Done()
	require.EqualValues(t, 2, runs.Load())
}
