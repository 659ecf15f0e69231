package jobs

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	internalmail "fulfiller/internal/mail"
	"fulfiller/internal/mail/mailtest"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
)

func TestKeyLookupTokenExpiresOnTheSecondTheClockSays(t *testing.T) {
	t.Parallel()
	secret := bytes.Repeat([]byte{7}, 32)
	issued := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	expiresAt := issued.Add(KeyLookupTokenTTL)
	token := signKeyLookupToken(secret, "buyer@example.com", expiresAt)

	for _, now := range []time.Time{issued, expiresAt.Add(-time.Second)} {
		email, until, err := checkKeyLookupToken(secret, token, now)
		require.NoError(t, err, now)
		require.Equal(t, "buyer@example.com", email)
		require.True(t, until.Equal(expiresAt))
	}
	for _, now := range []time.Time{expiresAt, expiresAt.Add(time.Hour)} {
		_, _, err := checkKeyLookupToken(secret, token, now)
		require.Equal(t, order.EUNAUTHORIZED, order.ErrorCode(err), now)
		require.Contains(t, err.Error(), "expired")
	}
	// Issued for longer than the service ever issues (a clock gone wrong).
	_, _, err := checkKeyLookupToken(secret, token, issued.Add(-2*time.Minute))
	require.Equal(t, errTokenInvalid, err)
}

func TestKeyLookupTokenRefusesAnotherKeyAndEveryChangedByte(t *testing.T) {
	t.Parallel()
	secret := bytes.Repeat([]byte{7}, 32)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	token := signKeyLookupToken(secret, "buyer@example.com", now.Add(KeyLookupTokenTTL))

	_, _, err := checkKeyLookupToken(bytes.Repeat([]byte{8}, 32), token, now)
	require.Equal(t, errTokenInvalid, err, "signed with another key")

	raw, err := base64.RawURLEncoding.DecodeString(token)
	require.NoError(t, err)
	for i := range raw {
		changed := append([]byte(nil), raw...)
		changed[i] ^= 0x20
		_, _, err := checkKeyLookupToken(secret, base64.RawURLEncoding.EncodeToString(changed), now)
		require.Equal(t, errTokenInvalid, err, "byte %d changed", i)
	}
	for name, bad := range map[string]string{
		"empty": "", "not base64": "!!!!", "padded": token + "==", "too short": token[:20],
		"too long": strings.Repeat("A", maxTokenLength+4),
	} {
		_, _, err := checkKeyLookupToken(secret, bad, now)
		require.Equal(t, errTokenInvalid, err, name)
	}
}

func TestNormalizeEmail(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"buyer@example.com":         "buyer@example.com",
		"  Buyer.One@Example.COM\t": "buyer.one@example.com",
		"a+tag@sub.example.org":     "a+tag@sub.example.org",
	} {
		got, err := NormalizeEmail(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got)
	}
	for _, in := range []string{
		"", "   ", "buyer", "buyer@", "@example.com", "Buyer <buyer@example.com>", "a@example.com, b@example.com",
		"buyer@example.com\nBcc: x@example.com", strings.Repeat("a", 250) + "@example.com",
	} {
		_, err := NormalizeEmail(in)
		require.Equal(t, order.EINVALID, order.ErrorCode(err), "%q", in)
	}
}

// lookupReplica is one replica's River client over a shared database:
// with mail (a test SMTP server) or without.
func lookupReplica(t *testing.T, pool *pgxpool.Pool, mailer *internalmail.Sender) *river.Client[pgx.Tx] {
	t.Helper()
	client, err := NewClient(Deps{Pool: pool, Mail: mailer, Logger: slog.New(slog.DiscardHandler)}, Config{})
	require.NoError(t, err)
	require.NoError(t, client.Start(context.Background()))
	t.Cleanup(func() { stopReplica(t, client) })
	return client
}

func stopReplica(t *testing.T, client *river.Client[pgx.Tx]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = client.Stop(ctx)
}

func testMailer(t *testing.T) (*internalmail.Sender, *mailtest.Server) {
	t.Helper()
	srv := mailtest.Start(t, "mailer", "mail-password")
	server, err := internalmail.ParseSMTPURL(srv.URL())
	require.NoError(t, err)
	return internalmail.NewSender(internalmail.Settings{SMTP: server, From: "Shop <keys@shop.example>",
		PublicBaseURL: "https://shop.example"}), srv
}

// buyerOrder records an order bought with email.
func buyerOrder(t *testing.T, pool *pgxpool.Pool, email string) *order.Order {
	t.Helper()
	o, err := postgres.UpsertOrder(context.Background(), pool, order.SessionDetails{
		CheckoutSessionID: "cs_test_" + strings.NewReplacer("@", "", ".", "").Replace(email), Mode: "payment",
		PaymentStatus: "paid", SessionStatus: "complete", CustomerEmail: email})
	require.NoError(t, err)
	return o
}

type jobState struct {
	id      int64
	state   string
	attempt int
	snoozes int
	errors  string
}

func onlyJob(t *testing.T, pool *pgxpool.Pool, kind string) jobState {
	t.Helper()
	var j jobState
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT id, state::text, attempt,
		COALESCE((metadata->>'snoozes')::int, 0), COALESCE(errors::text, '') FROM river_job WHERE kind = $1`, kind).
		Scan(&j.id, &j.state, &j.attempt, &j.snoozes, &j.errors))
	return j
}

func TestKeyLookupEmailWaitsOnAReplicaWithoutMailForOneWithIt(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	buyerOrder(t, pool, "buyer@example.com")

	// The replica that took the request has mail; the one that fetches its
	// job, in the middle of a rolling deploy, has none.
	inserter, err := NewClient(Deps{Pool: pool, Logger: slog.New(slog.DiscardHandler)}, Config{})
	require.NoError(t, err)
	orders := &Orders{Pool: pool, River: inserter, Logger: slog.New(slog.DiscardHandler)}
	accepted, err := orders.RequestKeyLookup(ctx, "buyer@example.com", netip.MustParseAddr("203.0.113.5"))
	require.NoError(t, err)
	require.True(t, accepted)

	noMail := lookupReplica(t, pool, nil)
	var job jobState
	require.Eventually(t, func() bool {
		job = onlyJob(t, pool, SendKeyLookupEmailArgs{}.Kind())
		return job.snoozes >= 1
	}, 10*time.Second, 20*time.Millisecond, "the replica without mail puts the job back")
	require.Equal(t, "scheduled", job.state)
	require.Empty(t, job.errors, "a snooze is no failure")
	require.Equal(t, 0, job.attempt, "a snooze uses no attempt")
	var waiting int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM key_lookup_emails`).Scan(&waiting))
	require.Equal(t, 1, waiting, "the request's address waits for a replica with mail")
	stopReplica(t, noMail)

	mailer, smtp := testMailer(t)
	lookupReplica(t, pool, mailer)
	// Its snooze would end within keyLookupMailWait; end it now.
	_, err = pool.Exec(ctx, `UPDATE river_job SET scheduled_at = now() WHERE id = $1`, job.id)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return onlyJob(t, pool, SendKeyLookupEmailArgs{}.Kind()).state == "completed" },
		10*time.Second, 20*time.Millisecond)
	msgs := smtp.Messages()
	require.Len(t, msgs, 1)
	require.Equal(t, []string{"buyer@example.com"}, msgs[0].To)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM key_lookup_emails`).Scan(&waiting))
	require.Zero(t, waiting, "the address is deleted once its link is sent")
}

func TestKeyLookupEmailWithoutMailIsCancelledOnceStale(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	buyerOrder(t, pool, "buyer@example.com")
	inserter, err := NewClient(Deps{Pool: pool, Logger: slog.New(slog.DiscardHandler)}, Config{})
	require.NoError(t, err)
	orders := &Orders{Pool: pool, River: inserter, Logger: slog.New(slog.DiscardHandler)}
	accepted, err := orders.RequestKeyLookup(ctx, "buyer@example.com", netip.MustParseAddr("203.0.113.5"))
	require.NoError(t, err)
	require.True(t, accepted)

	lookupReplica(t, pool, nil)
	var job jobState
	require.Eventually(t, func() bool {
		job = onlyJob(t, pool, SendKeyLookupEmailArgs{}.Kind())
		return job.snoozes >= 1
	}, 10*time.Second, 20*time.Millisecond)

	// No replica with mail came within the hour.
	_, err = pool.Exec(ctx, `UPDATE river_job SET created_at = now() - interval '61 minutes', scheduled_at = now() WHERE id = $1`, job.id)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		job = onlyJob(t, pool, SendKeyLookupEmailArgs{}.Kind())
		return job.state == "cancelled"
	}, 10*time.Second, 20*time.Millisecond)
	require.Contains(t, job.errors, "no replica with mail (SMTP_URL) took this find-my-keys request within 1h0m0s")
	var waiting int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM key_lookup_emails`).Scan(&waiting))
	require.Zero(t, waiting, "the address is deleted when the request is given up")
}

func TestKeyLookupIsCountedPerAddressAndClientPerNetworkAndPerAddress(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	// Not started: the jobs wait, and only the counting is under test.
	inserter, err := NewClient(Deps{Pool: pool, Logger: slog.New(slog.DiscardHandler)}, Config{})
	require.NoError(t, err)
	orders := &Orders{Pool: pool, River: inserter, Logger: slog.New(slog.DiscardHandler)}
	ask := func(email, client string) bool {
		t.Helper()
		accepted, err := orders.RequestKeyLookup(ctx, email, netip.MustParseAddr(client))
		require.NoError(t, err)
		return accepted
	}
	acceptedOf := func(email string, clients ...string) int {
		t.Helper()
		n := 0
		for _, c := range clients {
			if ask(email, c) {
				n++
			}
		}
		return n
	}

	// One client asks for an address three times an hour; another client
	// asking for the same address has an allowance of its own.
	require.Equal(t, KeyLookupsPerAddress, acceptedOf("buyer@example.com", "198.51.100.1", "198.51.100.1", "198.51.100.1", "198.51.100.1"))
	require.True(t, ask("buyer@example.com", "198.51.100.2"))
	// An IPv6 client is its /64: other host bits are the same client.
	require.Equal(t, KeyLookupsPerAddress, acceptedOf("buyer@example.com",
		"2001:db8:1:1::1", "2001:db8:1:1::2", "2001:db8:1:1:ffff::3", "2001:db8:1:1::4"))
	require.True(t, ask("buyer@example.com", "2001:db8:1:2::1"), "another /64 of the /48 is another client")
	// The /48's network count is now at 4 of its 10.
	require.Equal(t, KeyLookupsPerNetwork-4, acceptedOf("someone@example.com",
		"2001:db8:1:3::1", "2001:db8:1:4::1", "2001:db8:1:5::1", "2001:db8:1:6::1", "2001:db8:1:7::1", "2001:db8:1:8::1"))
	require.False(t, ask("another@example.com", "2001:db8:1:9::1"), "the network used its allowance, whatever the address")
	require.True(t, ask("another@example.com", "2001:db8:2:9::1"), "another /48 is another network")

	// Per address, whoever asks: 30. 3 + 1 + 3 + 1 were accepted above.
	accepted := 8
	for i := 10; accepted < KeyLookupsPerAddressAllClients; i++ {
		accepted += acceptedOf("buyer@example.com", fmt.Sprintf("192.0.2.%d", i), fmt.Sprintf("192.0.2.%d", i), fmt.Sprintf("192.0.2.%d", i))
	}
	require.Equal(t, KeyLookupsPerAddressAllClients, accepted)
	require.False(t, ask("buyer@example.com", "192.0.2.200"), "a fresh client meets the address's own bound")

	// Every accepted request is one address row and one job naming it; no
	// client is stored in the clear.
	var jobs, rows int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'send_key_lookup_email'
		AND args::text NOT LIKE '%@%' AND (args->>'request_id')::bigint IN (SELECT id FROM key_lookup_emails)`).Scan(&jobs))
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM key_lookup_emails`).Scan(&rows))
	require.Equal(t, KeyLookupsPerAddressAllClients+KeyLookupsPerNetwork-4+1, rows)
	require.Equal(t, rows, jobs)
	var plain int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM key_lookup_client_requests
		WHERE length(digest) <> 32 OR position('2001:db8'::bytea IN digest) > 0 OR position('192.0.2'::bytea IN digest) > 0`).Scan(&plain))
	require.Zero(t, plain)
}

func TestKeyLookupEmailJobOfTheOldFormStillSends(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	buyerOrder(t, pool, "buyer@example.com")
	mailer, smtp := testMailer(t)
	client := lookupReplica(t, pool, mailer)
	// As a replica of the previous version queued it, address and all.
	_, err := client.Insert(context.Background(), SendKeyLookupEmailArgs{Email: "buyer@example.com"}, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return onlyJob(t, pool, SendKeyLookupEmailArgs{}.Kind()).state == "completed" },
		10*time.Second, 20*time.Millisecond)
	msgs := smtp.Messages()
	require.Len(t, msgs, 1)
	require.Equal(t, []string{"buyer@example.com"}, msgs[0].To)
}
