package logging_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/logging"
)

func TestSampledLogsOncePerIntervalAndCountsTheRest(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	// An interval no test run outlasts: everything after the first record
	// is dropped until the interval is shortened below.
	s := &logging.Sampled{Every: time.Hour}
	ctx := context.Background()
	for range 5 {
		s.Log(ctx, l, slog.LevelWarn, "database unreachable", "path", "/readyz")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 1)
	require.Contains(t, lines[0], "level=WARN")
	require.Contains(t, lines[0], "path=/readyz suppressed=0")

	s.Every = time.Nanosecond
	s.Log(ctx, l, slog.LevelWarn, "database unreachable")
	lines = strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	require.Contains(t, lines[1], "suppressed=4", "the next record counts the four dropped")
}

func TestSampleByMessagePassesEachMessageOncePerInterval(t *testing.T) {
	var buf bytes.Buffer
	l := logging.SampleByMessage(slog.New(slog.NewTextHandler(&buf, nil)), time.Hour).With("component", "river")
	for range 4 {
		l.Error("fetch failed", "error", "connection refused")
	}
	l.Error("another failure")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2, "one line per message: %s", buf.String())
	require.Contains(t, lines[0], `msg="fetch failed"`)
	require.Contains(t, lines[0], "component=river")
	require.NotContains(t, lines[0], "suppressed")
	require.Contains(t, lines[1], `msg="another failure"`)

	// Past the interval the next record says how many were dropped.
	buf.Reset()
	l = logging.SampleByMessage(slog.New(slog.NewTextHandler(&buf, nil)), time.Nanosecond)
	l.Error("fetch failed")
	time.Sleep(time.Millisecond)
	l.Error("fetch failed")
	require.Equal(t, 2, strings.Count(buf.String(), "fetch failed"))
}

func TestScrubSessionIDsReplacesThemByTheOrderReference(t *testing.T) {
	id := "cs_test_a1B2c3D4e5F6g7H8"
	got := logging.ScrubSessionIDs("saving order " + id + ": connection refused (cs_live_ZZ9)")
	require.NotContains(t, got, id)
	require.NotContains(t, got, "cs_live_ZZ9")
	require.Contains(t, got, "saving order "+logging.OrderRef(id)+": connection refused")
}
