package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/logging"
)

func TestContextAttrsReachEveryLineLoggedWithTheContext(t *testing.T) {
	var buf bytes.Buffer
	logger := logging.New(&buf, "json", slog.LevelInfo).With("component", "jobs")
	ctx := logging.WithAttrs(context.Background(), slog.Int64("job_id", 42), slog.String("job_kind", "create_key"))
	inner := logging.WithAttrs(ctx, slog.String("step", "deliver"))

	logger.InfoContext(inner, "key delivered", "order_key_id", 7)
	logger.InfoContext(ctx, "next")
	logger.Info("no context")

	var lines []map[string]any
	for _, raw := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		require.NoError(t, json.Unmarshal(raw, &m))
		lines = append(lines, m)
	}
	require.Len(t, lines, 3)
	require.Equal(t, float64(42), lines[0]["job_id"])
	require.Equal(t, "create_key", lines[0]["job_kind"])
	require.Equal(t, "deliver", lines[0]["step"])
	require.Equal(t, "jobs", lines[0]["component"])
	require.Equal(t, float64(7), lines[0]["order_key_id"])
	require.NotContains(t, lines[1], "step", "a parent context does not see its child's attributes")
	require.Equal(t, float64(42), lines[1]["job_id"])
	require.NotContains(t, lines[2], "job_id")

	// Wrapping twice adds the attributes once.
	buf.Reset()
	twice := slog.New(logging.ContextHandler(logger.Handler()))
	twice.InfoContext(ctx, "once")
	require.Equal(t, 1, bytes.Count(buf.Bytes(), []byte(`"job_id"`)))
}
