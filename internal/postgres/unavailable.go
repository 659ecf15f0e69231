package postgres

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsUnavailable reports whether err means PostgreSQL could not be reached
// or dropped the connection (down, restarting, shutting down, unreachable)
// rather than refusing the statement. Such a failure says nothing about the
// request: the same request succeeds once the database is back, so callers
// answer 503 and ask to retry instead of reporting an internal error.
func IsUnavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false // a caller that gave up is no outage
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// The server answered: its code decides, even when the answer
		// ended a connection attempt (a wrong password is no outage).
		return unavailableSQLState(pgErr.Code)
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || // refused, unreachable, DNS
		pgconn.SafeToRetry(err) || // failed before anything was sent
		pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, pgconn.ErrConnClosed) ||
		errors.As(err, &netErr) ||
		// The server closed the connection mid-conversation.
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// unavailableSQLState is true for the SQLSTATEs of a server that cannot
// serve now: connection exceptions (class 08), an administrator's or a
// crash's shutdown (57P01 admin_shutdown, 57P02 crash_shutdown), a server
// still starting or stopping (57P03 cannot_connect_now), and a full server
// (53300 too_many_connections).
func unavailableSQLState(code string) bool {
	switch code {
	case "57P01", "57P02", "57P03", "53300":
		return true
	}
	return len(code) == 5 && code[:2] == "08"
}
