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
