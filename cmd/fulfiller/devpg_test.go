package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/logging/logtest"
)

// withPostgres is scripts/with-postgres, run as `make run` runs it: a kept
// cluster in data on port, with DATABASE_URL unset so it starts its own.
func withPostgres(t *testing.T, data string, port int, command ...string) *exec.Cmd {
	t.Helper()
	args := append([]string{"--data", data, "--port", fmt.Sprint(port), "--"}, command...)
	cmd := exec.Command(filepath.Join("..", "..", "scripts", "with-postgres"), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// devDataDir is a folder for kept clusters that the server's own user can
// reach (t.TempDir's parent is private to root).
func devDataDir(t *testing.T) string {
	t.Helper()
	parent := filepath.Join("..", "..", ".pg")
	require.NoError(t, os.MkdirAll(parent, 0o755))
	dir, err := os.MkdirTemp(parent, "devtest.")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	abs, err := filepath.Abs(dir)
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(abs) })
	return abs
}

func TestASecondMakeRunRefusesAtOnceAndLeavesTheFirstServerRunning(t *testing.T) {
	t.Parallel()
	data := filepath.Join(devDataDir(t), "pgdata")
	port := freePort(t)

	first := withPostgres(t, data, port, "sh", "-c", "echo ready; exec sleep 300")
	out, err := first.StdoutPipe()
	require.NoError(t, err)
	// The server's output goes on arriving while the test reads it.
	var firstErr logtest.Buffer
	first.Stderr = &firstErr
	require.NoError(t, first.Start())
	t.Cleanup(func() {
		_ = syscall.Kill(-first.Process.Pid, syscall.SIGTERM)
		_ = first.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err, "the first run did not start its server: %s", firstErr.String())
	require.Equal(t, "ready\n", line)

	// The same cluster, as a second `make run` in the same checkout.
	start := time.Now()
	second := withPostgres(t, data, port, "true")
	msg, err := second.CombinedOutput()
	require.Error(t, err, "a second run on the same cluster must fail: %s", msg)
	require.Less(t, time.Since(start), 10*time.Second, "it refuses at once rather than waiting on the server")
	require.Contains(t, string(msg), "already using the PostgreSQL cluster in "+data)
	require.Contains(t, string(msg), fmt.Sprintf("on port %d", port))
	require.Contains(t, string(msg), "DEV_PG_DATA")

	// Another cluster on the same port.
	third := withPostgres(t, filepath.Join(devDataDir(t), "pgdata"), port, "true")
	msg, err = third.CombinedOutput()
	require.Error(t, err, "a second run on the same port must fail: %s", msg)
	require.Contains(t, string(msg), fmt.Sprintf("port %d on 127.0.0.1 is already in use", port))
	require.Contains(t, string(msg), "DEV_PG_PORT")

	// The first run's server still answers.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/fulfiller?sslmode=disable", port))
	require.NoError(t, err, "the refused runs stopped the first run's server")
	defer conn.Close(ctx)
	var one int
	require.NoError(t, conn.QueryRow(ctx, "SELECT 1").Scan(&one))
	require.Equal(t, 1, one)
}
