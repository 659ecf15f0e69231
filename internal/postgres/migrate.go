// Package postgres stores orders, keys and Stripe events in PostgreSQL, and
// applies the schema (the service's own and River's).
//
// The queue of keys still to check for an expiry notice (expiry_checks_due,
// filled by triggers, taken by ExpiringKeys and KeysExpiringUnannounced)
// holds only active keys whose expiry is still ahead: it is bounded by the
// shop's current keys, not by its history.
package postgres

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"fulfiller/internal/logging"
	"fulfiller/migrations"
)

// migrationLock serialises replicas that start with --migrate together.
const migrationLock = 0x66756c66 // "fulf"

// Migrate applies River's schema and every pending migration of the
// service. It is idempotent and safe to run from several replicas at once.
func Migrate(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: connecting: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return fmt.Errorf("migrate: taking the migration lock: %w", err)
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", migrationLock) //nolint:errcheck // an unlock fails only on a broken connection, which the pool discards, and the lock with it

	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: logging.AtLeast(logger, slog.LevelWarn)})
	if err != nil {
		return fmt.Errorf("migrate: river: %w", err)
	}
	res, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return fmt.Errorf("migrate: river schema: %w", err)
	}
	for _, v := range res.Versions {
		logger.Info("applied river migration", "version", v.Version, "name", v.Name)
	}

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS fulfiller_migrations (
		version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate: creating fulfiller_migrations: %w", err)
	}
	files, err := migrationFiles()
	if err != nil {
		return err
	}
	for _, f := range files {
		version, name := f.version, f.name
		var applied bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM fulfiller_migrations WHERE version = $1)", version).Scan(&applied); err != nil {
			return fmt.Errorf("migrate: reading applied versions: %w", err)
		}
		if applied {
			continue
		}
		sql, err := fs.ReadFile(migrations.FS, name)
		if err != nil {
			return err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, string(sql)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO fulfiller_migrations (version, name) VALUES ($1, $2)", version, name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: applying %s: %w", name, err)
		}
		logger.Info("applied migration", "version", version, "name", name)
	}
	return nil
}

// migrationFile is one embedded migration.
type migrationFile struct {
	version int
	name    string
}

// migrationFiles lists the embedded migrations in the order they apply.
func migrationFiles() ([]migrationFile, error) {
	names, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	files := make([]migrationFile, 0, len(names))
	for _, name := range names {
		version, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("migrate: %s: file name must start with a number: %w", name, err)
		}
		files = append(files, migrationFile{version, name})
	}
	return files, nil
}
