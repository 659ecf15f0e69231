package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/logging"
)

func TestMaskKeyShowsTheLastFourCharactersOnly(t *testing.T) {
	require.Equal(t, "…WXYZ", logging.MaskKey("abcdefghijklmnopqrstuvWXYZ"))
	require.Equal(t, "…", logging.MaskKey("short123"), "a key this short shows nothing")
	require.Equal(t, "…", logging.MaskKey(""))
}

func TestTruncateBoundsTextAndSaysHowMuchWasCut(t *testing.T) {
	require.Equal(t, "fits", logging.Truncate("fits", 10))
	long := strings.Repeat("é", 3000) // two bytes each: counted as characters
	got := logging.Truncate(long, logging.MaxReasonLength)
	require.Equal(t, logging.MaxReasonLength, utf8.RuneCountInString(got))
	require.True(t, utf8.ValidString(got))
	require.True(t, strings.HasSuffix(got, "more characters)"))
	kept := strings.Count(got, "é")
	require.Contains(t, got, fmt.Sprintf("(%d more characters)", 3000-kept), "the count is what was cut")
}

func TestSampledByKeyLogsEachKeyOnceAnIntervalWithACount(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, nil))
	s := &logging.SampledByKey{Every: time.Hour}
	ctx := context.Background()
	for range 2000 {
		s.Log(ctx, l, slog.LevelWarn, "198.51.100.7", "webhook rejected", "remote", "198.51.100.7")
	}
	s.Log(ctx, l, slog.LevelWarn, "203.0.113.9", "webhook rejected", "remote", "203.0.113.9")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2, "one line per client, not one per post")
	require.Contains(t, lines[0], "198.51.100.7")
	require.Contains(t, lines[1], "203.0.113.9", "another client's first record is not sampled away")

	// The next record of the noisy client, past the interval, counts
	// everything dropped since.
	sampler := &logging.SampledByKey{Every: time.Nanosecond}
	buf.Reset()
	sampler.Log(ctx, l, slog.LevelWarn, "a", "m")
	time.Sleep(time.Millisecond)
	sampler.Log(ctx, l, slog.LevelWarn, "a", "m")
	require.Equal(t, 2, strings.Count(buf.String(), `"suppressed":0`))
}

func TestSampledByKeyIsBoundedInKeys(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, nil))
	s := &logging.SampledByKey{Every: time.Hour, MaxKeys: 10}
	for i := range 1000 {
		s.Log(context.Background(), l, slog.LevelWarn, fmt.Sprint("client-", i), "refused")
	}
	// Ten clients get a sampler each; the other 990 share one.
	require.Equal(t, 11, strings.Count(buf.String(), "\n"))
}

func TestNewWritesTheChosenFormatAtTheChosenLevel(t *testing.T) {
	var buf bytes.Buffer
	logging.New(&buf, "json", slog.LevelWarn).Info("dropped")
	logging.New(&buf, "json", slog.LevelWarn).Warn("kept", "n", 1)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec))
	require.Equal(t, "kept", rec["msg"])
	buf.Reset()
	logging.New(&buf, "text", slog.LevelInfo).Info("hello", "n", 1)
	require.Contains(t, buf.String(), "level=INFO msg=hello n=1")
}
