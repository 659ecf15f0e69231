// Package postgrestest gives tests a database of their own with the
// service's full schema (River's and the service's migrations).
package postgrestest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"log/slog"
	"runtime/debug"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"fulfiller/internal/postgres"
	"fulfiller/internal/testdb"
	"fulfiller/migrations"
)

// Template is the migrated schema; its version follows the migration files
// so that a changed migration never reuses an old template.
var Template = &testdb.Template{
	Name:    "fulfiller",
	Version: schemaVersion(),
	Prepare: func(ctx context.Context, url string) error {
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			return err
		}
		defer pool.Close()
		return postgres.Migrate(ctx, pool, slog.New(slog.DiscardHandler))
	},
}

// NewURL returns the URL of a fresh, migrated database.
func NewURL(t testing.TB) string { return testdb.NewURL(t, Template) }

// NewPool returns a pool on a fresh, migrated database.
func NewPool(t testing.TB) *pgxpool.Pool { return testdb.NewPool(t, Template) }

func schemaVersion() string {
	h := sha256.New()
	// River's schema changes with its version.
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, m := range info.Deps {
			if m.Path == "github.com/riverqueue/river" {
				h.Write([]byte(m.Version))
			}
		}
	}
	_ = fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		h.Write([]byte(path))
		h.Write(b)
		return err
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// StockLevel counts a price's stock keys: ready to sell, and being made.
func StockLevel(ctx context.Context, db postgres.DB, priceID string) (ready, pending int, err error) {
	err = db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'ready'), count(*) FILTER (WHERE status = 'pending')
		FROM stock_keys WHERE price_id = $1`, priceID).Scan(&ready, &pending)
	return ready, pending, err
}
