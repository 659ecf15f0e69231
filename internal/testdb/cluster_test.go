package testdb_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/testdb"
)

func TestClusterStopsAndRestartsWithItsData(t *testing.T) {
	t.Parallel()
	c := testdb.StartCluster(t)
	url := c.CreateDatabase(t, "selftest")

	// insertAndCount adds a row and counts the rows.
	insertAndCount := func() (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return 0, err
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS marker (at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return 0, err
		}
		if _, err := conn.Exec(ctx, `INSERT INTO marker DEFAULT VALUES`); err != nil {
			return 0, err
		}
		var n int
		err = conn.QueryRow(ctx, `SELECT count(*) FROM marker`).Scan(&n)
		return n, err
	}
	n, err := insertAndCount()
	require.NoError(t, err)
	require.Equal(t, 1, n)

	for i, mode := range []testdb.ShutdownMode{testdb.ShutdownFast, testdb.ShutdownImmediate} {
		c.Stop(t, mode)
		_, err := insertAndCount()
		var connectErr *pgconn.ConnectError
		require.ErrorAs(t, err, &connectErr, "the server is down after a %s stop", mode)

		c.Start(t)
		n, err := insertAndCount()
		require.NoError(t, err)
		require.Equal(t, i+2, n, "every row committed before the %s stop is there after the restart", mode)
	}
}
