package testdb_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/testdb"
)

func TestDatabasesAreIsolatedAndCloneTheTemplate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tmpl := &testdb.Template{
		Name:    "selftest",
		Version: "1",
		Prepare: func(ctx context.Context, url string) error {
			pool := mustPool(t, url)
			defer pool.Close()
			_, err := pool.Exec(ctx, "CREATE TABLE marker (id int PRIMARY KEY); INSERT INTO marker VALUES (1)")
			return err
		},
	}
	a := testdb.NewPool(t, tmpl)
	b := testdb.NewPool(t, tmpl)

	_, err := a.Exec(ctx, "INSERT INTO marker VALUES (2)")
	require.NoError(t, err)

	var na, nb int
	require.NoError(t, a.QueryRow(ctx, "SELECT count(*) FROM marker").Scan(&na))
	require.NoError(t, b.QueryRow(ctx, "SELECT count(*) FROM marker").Scan(&nb))
	require.Equal(t, 2, na, "a sees the template row and its own")
	require.Equal(t, 1, nb, "b sees only the template row")

	var nameA, nameB string
	require.NoError(t, a.QueryRow(ctx, "SELECT current_database()").Scan(&nameA))
	require.NoError(t, b.QueryRow(ctx, "SELECT current_database()").Scan(&nameB))
	require.NotEqual(t, nameA, nameB)
}

func TestEmptyDatabase(t *testing.T) {
	t.Parallel()
	pool := testdb.NewPool(t, nil)
	var n int
	require.NoError(t, pool.QueryRow(context.Background(),
		"SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").Scan(&n))
	require.Zero(t, n)
}

func mustPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	require.NoError(t, err)
	return pool
}
