package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"fulfiller/internal/postgres"
)

// databases hands out fresh databases on the server of DATABASE_URL and
// drops every one of them at the end.
//
// internal/testdb does the same for tests but needs a testing.TB; this is the
// minimal equivalent for a command: the service's schema is migrated once
// into a template and every phase gets a clone of it (a file copy, a few
// milliseconds), so no phase sees another phase's rows, dead tuples or
// pending autovacuum work.
type databases struct {
	server string // DATABASE_URL

	mu      sync.Mutex
	created []string // names to drop, in creation order
}

func newDatabases() (*databases, error) {
	server := os.Getenv("DATABASE_URL")
	if server == "" {
		return nil, errors.New("DATABASE_URL is not set: run `make bench`, which starts a throwaway PostgreSQL, or point DATABASE_URL at a server where this user may CREATE DATABASE")
	}
	if _, err := url.Parse(server); err != nil {
		return nil, fmt.Errorf("DATABASE_URL is not a URL: %w", err)
	}
	return &databases{server: server}, nil
}

// admin runs f on a short-lived connection to the DATABASE_URL database.
func (d *databases) admin(ctx context.Context, f func(*pgx.Conn) error) error {
	c, err := pgx.Connect(ctx, d.server)
	if err != nil {
		return fmt.Errorf("connecting to DATABASE_URL: %w", err)
	}
	defer c.Close(context.Background())
	return f(c)
}

// serverVersion is the server's `SHOW server_version`.
func (d *databases) serverVersion(ctx context.Context) (string, error) {
	var v string
	err := d.admin(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, "SHOW server_version").Scan(&v)
	})
	if err != nil {
		return "", fmt.Errorf("reading the PostgreSQL version: %w", err)
	}
	return v, nil
}

// create makes an empty database, or a clone of template when it is not
// empty, and returns its URL.
func (d *databases) create(ctx context.Context, template string) (name, dbURL string, err error) {
	name = "bench_" + randomHex(6)
	stmt := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		stmt += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	err = d.admin(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, stmt)
		return err
	})
	if err != nil {
		return "", "", fmt.Errorf("creating database %s: %w", name, err)
	}
	d.mu.Lock()
	d.created = append(d.created, name)
	d.mu.Unlock()
	u, err := url.Parse(d.server)
	if err != nil {
		return "", "", fmt.Errorf("DATABASE_URL is not a URL: %w", err)
	}
	u.Path = "/" + name
	return name, u.String(), nil
}

// migratedTemplate creates a database with the service's full schema (River's
// and the service's migrations, exactly as `fulfiller migrate` applies them)
// to clone the service's databases from.
func (d *databases) migratedTemplate(ctx context.Context) (string, error) {
	name, dbURL, err := d.create(ctx, "")
	if err != nil {
		return "", err
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return "", fmt.Errorf("opening the template database %s: %w", name, err)
	}
	// The pool must be closed before the database is cloned: PostgreSQL
	// refuses a template that has open connections.
	defer pool.Close()
	if err := postgres.Migrate(ctx, pool, slog.New(slog.DiscardHandler)); err != nil {
		return "", fmt.Errorf("migrating the template database %s: %w", name, err)
	}
	return name, nil
}

// drop removes one database, disconnecting whatever is still connected.
func (d *databases) drop(ctx context.Context, name string) error {
	err := d.admin(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		return err
	})
	if err != nil {
		return fmt.Errorf("dropping database %s: %w", name, err)
	}
	return nil
}

// dropAll drops every database created so far. It runs at exit, also after
// an interrupt, so it uses its own deadline rather than the run's context.
func (d *databases) dropAll() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d.mu.Lock()
	names := d.created
	d.created = nil
	d.mu.Unlock()
	var errs []error
	for i := len(names) - 1; i >= 0; i-- {
		errs = append(errs, d.drop(ctx, names[i]))
	}
	return errors.Join(errs...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
