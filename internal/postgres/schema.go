package postgres

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// PendingMigrations names the migrations this binary holds that the
// database lacks, River's and the service's: a replica is not ready to
// serve on an older schema than its code expects. Versions the database
// has and this binary does not (a newer replica migrated first, during a
// rollout) are no reason to stop serving.
func PendingMigrations(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	var pending []string
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, fmt.Errorf("reading River's migrations: %w", err)
	}
	existing, err := migrator.ExistingVersions(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading River's applied migrations: %w", err)
	}
	riverApplied := map[int]bool{}
	for _, m := range existing {
		riverApplied[m.Version] = true
	}
	for _, m := range migrator.AllVersions() {
		if !riverApplied[m.Version] {
			pending = append(pending, fmt.Sprintf("river %03d_%s", m.Version, m.Name))
		}
	}

	files, err := migrationFiles()
	if err != nil {
		return nil, err
	}
	var tableExists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('fulfiller_migrations') IS NOT NULL").Scan(&tableExists); err != nil {
		return nil, fmt.Errorf("reading applied migrations: %w", err)
	}
	applied := map[int]bool{}
	if tableExists {
		rows, err := pool.Query(ctx, "SELECT version FROM fulfiller_migrations")
		if err != nil {
			return nil, fmt.Errorf("reading applied migrations: %w", err)
		}
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return nil, fmt.Errorf("reading applied migrations: %w", err)
			}
			applied[v] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("reading applied migrations: %w", err)
		}
	}
	for _, f := range files {
		if !applied[f.version] {
			pending = append(pending, f.name)
		}
	}
	return pending, nil
}
