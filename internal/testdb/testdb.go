// Package testdb gives each test its own PostgreSQL database, so tests that
// use the real River client and the project's schema can run in parallel
// without seeing each other's rows.
//
// The server comes from DATABASE_URL, which `make test` sets by starting a
// throwaway cluster (scripts/with-postgres). Each database is cloned from a
// template that is prepared once per server and schema version, which takes
// a few milliseconds instead of running every migration per test.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Prepare migrates a freshly created template database at url.
type Prepare func(ctx context.Context, url string) error

// Template names a template database and how to prepare it. Version must
// change whenever Prepare would produce a different schema, so that a kept
// development server never hands out a stale template.
type Template struct {
	Name    string
	Version string
	Prepare Prepare
}

// ServerURL returns DATABASE_URL or fails the test with what to do.
func ServerURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("DATABASE_URL")
	if u == "" {
		t.Fatal("DATABASE_URL is not set: run the tests with `make test`, which starts a throwaway PostgreSQL, or point DATABASE_URL at a server where this user may CREATE DATABASE")
	}
	return u
}

// NewURL creates an empty database (or a clone of tmpl when given) that is
// dropped when the test ends, and returns its connection URL.
func NewURL(t testing.TB, tmpl *Template) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	server := ServerURL(t)
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatalf("testdb: connecting to DATABASE_URL: %v", err)
	}
	defer admin.Close(ctx)

	clause := ""
	if tmpl != nil {
		name, err := ensureTemplate(ctx, admin, server, *tmpl)
		if err != nil {
			t.Fatalf("testdb: preparing template %q: %v", tmpl.Name, err)
		}
		clause = " TEMPLATE " + pgx.Identifier{name}.Sanitize()
	}
	name := "test_" + randomHex(8)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+clause); err != nil {
		t.Fatalf("testdb: creating database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Logf("testdb: dropping %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("testdb: dropping %s: %v", name, err)
		}
	})
	return withDatabase(t, server, name)
}

// NewPool is NewURL plus a pool that is closed when the test ends.
func NewPool(t testing.TB, tmpl *Template) *pgxpool.Pool {
	t.Helper()
	u := NewURL(t, tmpl)
	pool, err := pgxpool.New(context.Background(), u)
	if err != nil {
		t.Fatalf("testdb: opening pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// ensureTemplate creates and prepares the template once per server. An
// advisory lock serialises test binaries that race to build it.
func ensureTemplate(ctx context.Context, admin *pgx.Conn, server string, tmpl Template) (string, error) {
	h := fnv.New32a()
	h.Write([]byte(tmpl.Name + "\x00" + tmpl.Version))
	name := fmt.Sprintf("tmpl_%s_%08x", tmpl.Name, h.Sum32())
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock(727274)"); err != nil {
		return "", err
	}
	defer admin.Exec(context.Background(), "SELECT pg_advisory_unlock(727274)") //nolint:errcheck // the lock goes with admin, closed by the caller

	var ready bool
	err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)", name).Scan(&ready)
	if err != nil || ready {
		return name, err
	}
	// A template left half-made by an interrupted run is rebuilt.
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	if tmpl.Prepare != nil {
		u, err := replaceDatabase(server, name)
		if err != nil {
			return "", err
		}
		if err := tmpl.Prepare(ctx, u); err != nil {
			return "", err
		}
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH IS_TEMPLATE true"); err != nil {
		return "", err
	}
	return name, nil
}

func withDatabase(t testing.TB, server, name string) string {
	t.Helper()
	u, err := replaceDatabase(server, name)
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	return u
}

func replaceDatabase(server, name string) (string, error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", fmt.Errorf("DATABASE_URL is not a URL: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Long marks a test too slow for -short: it is skipped there, except in CI
// (CI set), where a skipped test would prove nothing, so -short fails it.
func Long(t testing.TB, what string) {
	t.Helper()
	if !testing.Short() {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s: CI must run it; drop -short", what)
	}
	t.Skipf("%s; skipped with -short", what)
}
