package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/testdb"
)

func TestIsUnavailable(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("reading order cs_test_x: %w", err) }
	for name, tc := range map[string]struct {
		err  error
		want bool
	}{
		"admin shutdown":          {wrap(&pgconn.PgError{Code: "57P01"}), true},
		"crash shutdown":          {&pgconn.PgError{Code: "57P02"}, true},
		"starting up":             {&pgconn.PgError{Code: "57P03"}, true},
		"too many connections":    {&pgconn.PgError{Code: "53300"}, true},
		"connection failure":      {&pgconn.PgError{Code: "08006"}, true},
		"connection closed":       {wrap(pgconn.ErrConnClosed), true},
		"socket error":            {wrap(&net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}), true},
		"closed mid-message":      {wrap(io.ErrUnexpectedEOF), true},
		"deadline":                {wrap(context.DeadlineExceeded), true},
		"unique violation":        {wrap(&pgconn.PgError{Code: "23505"}), false},
		"query canceled":          {&pgconn.PgError{Code: "57014"}, false},
		"no rows":                 {wrap(pgx.ErrNoRows), false},
		"domain error":            {order.Errorf(order.ENOTFOUND, "no order"), false},
		"caller gave up":          {wrap(context.Canceled), false},
		"anything else":           {errors.New("boom"), false},
		"nil":                     {nil, false},
		"admin shutdown canceled": {errors.Join(context.Canceled, &pgconn.PgError{Code: "57P01"}), false},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, postgres.IsUnavailable(tc.err))
		})
	}
}

func TestIsUnavailableOnRealFailures(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Nothing listens: the connection is refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := l.Addr().String()
	require.NoError(t, l.Close())
	_, err = pgx.Connect(ctx, "postgres://postgres@"+closedAddr+"/x?sslmode=disable&connect_timeout=5")
	require.Error(t, err)
	require.True(t, postgres.IsUnavailable(err), "%v", err)

	// The server is up but the database does not exist: a configuration
	// mistake, not an outage.
	u, err := url.Parse(testdb.ServerURL(t))
	require.NoError(t, err)
	u.Path = "/no_such_database"
	_, err = pgx.Connect(ctx, u.String())
	require.Error(t, err)
	require.False(t, postgres.IsUnavailable(err), "%v", err)

	pool := postgrestest.NewPool(t)
	_, err = pool.Exec(ctx, "SELECT * FROM no_such_table")
	require.Error(t, err)
	require.False(t, postgres.IsUnavailable(err), "%v", err)

	// A session the server ends (as a shutdown does) is unavailable, and
	// so is the next use of that dead connection.
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	var pid int
	require.NoError(t, conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))
	_, err = pool.Exec(ctx, "SELECT pg_terminate_backend($1)", pid)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "SELECT 1")
	require.Error(t, err)
	require.True(t, postgres.IsUnavailable(err), "%v", err)
	_, err = conn.Exec(ctx, "SELECT 1")
	require.Error(t, err)
	require.True(t, postgres.IsUnavailable(err), "%v", err)
}
