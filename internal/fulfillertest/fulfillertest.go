// Package fulfillertest is the one test harness of the service: every
// package's tests start what the service runs against, and the service
// itself, through it.
//
//   - StartLuarmor and StartStripe run the project's stand-ins (the Luarmor
//     sandbox, the Stripe fake) on real loopback HTTP servers.
//   - StartService runs the whole service (app.Main) on port 0 against
//     them and a migrated database of the test's own.
//   - StartRiver and WatchJobs run a River client for the test and wait on
//     River's own job events; JobsUntil and Service.WaitJobsUntil wait for
//     a state jobs bring about, checked as their attempts end;
//     Service.WaitOrder waits on the service's order notifications. Tests
//     wait for what happened, not by polling.
//   - Event and Sign build Stripe events signed as Stripe signs them
//     (stripe-go's webhook.GenerateTestSignedPayload).
//
// Everything it starts stops when the test ends (t.Cleanup).
package fulfillertest

import (
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Logger is a logger that writes to the test's log at level and above, so
// a failing test shows what the service said and a passing one stays quiet.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var seq atomic.Int64

// NewID returns an ID with prefix ("cs_test_", "evt_", "cus_") that no
// other call in this test binary returns, in the alphabet Stripe's IDs use.
func NewID(prefix string) string {
	return fmt.Sprintf("%s%d%07d", prefix, time.Now().UnixNano()%1e9, seq.Add(1))
}
