package testdb

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a private PostgreSQL server started from the machine's server
// binaries, for tests that stop and restart the database under a running
// service: the suite's shared server (DATABASE_URL) must never go down.
// It keeps its data directory and port across Stop and Start.
type Cluster struct {
	bin  string // folder holding initdb and pg_ctl
	data string
	port int
	// asPostgres is set under root: PostgreSQL refuses to run as root, so
	// the server runs as the postgres system user.
	asPostgres bool
}

// ShutdownMode is pg_ctl's stop mode.
type ShutdownMode string

const (
	// ShutdownFast ends every session with an admin-shutdown error
	// (SQLSTATE 57P01) and stops cleanly.
	ShutdownFast ShutdownMode = "fast"
	// ShutdownImmediate kills the server as a crash would; the next start
	// recovers from the write-ahead log.
	ShutdownImmediate ShutdownMode = "immediate"
)

// StartCluster creates and starts a throwaway cluster with fsync off on a
// free local port; it is stopped and deleted when the test ends. The test is
// skipped when the server binaries are not installed, except in CI
// (CI set), whose .ci/run installs them: there a missing binary fails.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := findServerBinaries()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("testdb: %v (.ci/run installs postgresql-15)", err)
		}
		t.Skipf("testdb: %v", err)
	}
	c := &Cluster{bin: bin, asPostgres: os.Geteuid() == 0}

	// The server, running as postgres under root, must be able to reach
	// its data folder: a private, traversable parent owned by the test.
	parent, err := os.MkdirTemp("", "fulfiller-pgcluster-")
	if err != nil {
		t.Fatalf("testdb: creating the cluster's folder: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o711); err != nil {
		t.Fatalf("testdb: %v", err)
	}
	c.data = filepath.Join(parent, "data")
	if err := os.Mkdir(c.data, 0o700); err != nil {
		t.Fatalf("testdb: %v", err)
	}
	if c.asPostgres {
		if err := chownToPostgres(c.data); err != nil {
			t.Fatalf("testdb: %v", err)
		}
	}
	if out, err := c.run("initdb", "-D", c.data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-locale"); err != nil {
		t.Fatalf("testdb: initdb failed: %v\n%s", err, out)
	}
	if c.port, err = freePort(); err != nil {
		t.Fatalf("testdb: %v", err)
	}
	t.Cleanup(func() {
		if out, err := c.stop(ShutdownImmediate); err != nil {
			t.Logf("testdb: stopping the private cluster: %v\n%s", err, out)
		}
	})
	c.Start(t)
	return c
}

// URL returns the connection URL of database db on the cluster.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// CreateDatabase creates an empty database and returns its URL.
func (c *Cluster) CreateDatabase(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatalf("testdb: connecting to the private cluster: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testdb: creating database %s: %v", name, err)
	}
	return c.URL(name)
}

// Start starts the server on its data directory and port and returns once
// it accepts connections.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	opts := strings.Join([]string{
		"-p", strconv.Itoa(c.port), "-k", c.data, "-c", "listen_addresses=127.0.0.1",
		// fsync off trades durability against a machine crash only: what
		// a commit wrote is in the OS's cache and survives the server's
		// own crash (an immediate stop). Commits stay synchronous, or an
		// immediate stop would lose transactions already acknowledged.
		"-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200",
	}, " ")
	out, err := c.run("pg_ctl", "-D", c.data, "-l", filepath.Join(c.data, "server.log"), "-w", "-t", "60", "start", "-o", opts)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(c.data, "server.log"))
		t.Fatalf("testdb: starting the private cluster on port %d failed: %v\n%s\n%s", c.port, err, out, log)
	}
}

// Stop stops the server and returns once it is down; connections and new
// connection attempts fail until Start.
func (c *Cluster) Stop(t testing.TB, mode ShutdownMode) {
	t.Helper()
	if out, err := c.stop(mode); err != nil {
		t.Fatalf("testdb: stopping the private cluster: %v\n%s", err, out)
	}
}

func (c *Cluster) stop(mode ShutdownMode) ([]byte, error) {
	if _, err := os.Stat(filepath.Join(c.data, "postmaster.pid")); errors.Is(err, os.ErrNotExist) {
		return nil, nil // already stopped
	}
	return c.run("pg_ctl", "-D", c.data, "-m", string(mode), "-w", "-t", "60", "stop")
}

// run runs one of the server binaries, as postgres under root.
func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	path := filepath.Join(c.bin, name)
	var cmd *exec.Cmd
	if c.asPostgres {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = os.TempDir() // the postgres user may not be able to read the test's folder
	return cmd.CombinedOutput()
}

// findServerBinaries looks on PATH, then in Debian's versioned folders.
func findServerBinaries() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Prefer 15, the version the service is tested with.
	dirs = append([]string{"/usr/lib/postgresql/15/bin"}, dirs...)
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql/*/bin; install them (Debian: apt-get install postgresql-15) to run this test")
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func chownToPostgres(path string) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("running the private cluster as root needs the postgres system user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}

// freePort picks a free local port below the ephemeral range, so that no
// outgoing connection takes it while the server is stopped.
func freePort() (int, error) {
	for range 200 {
		port := 15000 + rand.IntN(15000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		_ = l.Close()
		return port, nil
	}
	return 0, errors.New("no free port found between 15000 and 30000")
}
