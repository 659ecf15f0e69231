package jobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	internalmail "fulfiller/internal/mail"
	"fulfiller/internal/mail/mailtest"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// mailReplica starts one replica's River client over b's database, with
// mail (mailer, a test SMTP server's sender) or without (nil), and returns
// it with the watch of its jobs.
func (b *testBundle) mailReplica(t *testing.T, mailer *internalmail.Sender) (*river.Client[pgx.Tx], *fulfillertest.JobWatch) {
	t.Helper()
	client, err := jobs.NewClient(jobs.Deps{Pool: b.pool, Mail: mailer, Logger: b.deps.Logger}, jobs.Config{})
	require.NoError(t, err)
	return client, b.start(t, client)
}

// inserter is a client that is never started: the jobs it queues wait.
func (b *testBundle) inserter(t *testing.T) *river.Client[pgx.Tx] {
	t.Helper()
	client, err := jobs.NewClient(jobs.Deps{Pool: b.pool, Logger: b.deps.Logger}, jobs.Config{})
	require.NoError(t, err)
	return client
}

// stop stops a replica before the test ends.
func stop(t *testing.T, client *river.Client[pgx.Tx]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, client.Stop(ctx))
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

// waitSnoozed waits for a job of kind to be put back (JobSnooze) and
// returns its row as it was put back.
func waitSnoozed(t *testing.T, w *fulfillertest.JobWatch, kind, what string) *rivertype.JobRow {
	t.Helper()
	return w.WaitFor(t, what, func(ev *river.Event) bool {
		return ev.Kind == river.EventKindJobSnoozed && ev.Job.Kind == kind
	}).Job
}

func (b *testBundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func TestKeyLookupEmailWaitsOnAReplicaWithoutMailForOneWithIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	buyerOrder(t, b.pool, "buyer@example.com")

	// The replica that took the request has mail; the one that fetches its
	// job, in the middle of a rolling deploy, has none.
	orders := &jobs.Orders{Pool: b.pool, River: b.inserter(t), Logger: b.deps.Logger}
	accepted, err := orders.RequestKeyLookup(ctx, "buyer@example.com", netip.MustParseAddr("203.0.113.5"))
	require.NoError(t, err)
	require.True(t, accepted)

	noMail, noMailJobs := b.mailReplica(t, nil)
	job := waitSnoozed(t, noMailJobs, jobs.SendKeyLookupEmailArgs{}.Kind(), "the replica without mail puts the job back")
	require.Equal(t, rivertype.JobStateScheduled, job.State)
	require.Empty(t, job.Errors, "a snooze is no failure")
	require.Equal(t, 0, job.Attempt, "a snooze uses no attempt")
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM key_lookup_emails`), "the request's address waits for a replica with mail")
	stop(t, noMail)

	mailer, smtp := testMailer(t)
	withMail, withMailJobs := b.mailReplica(t, mailer)
	// Its snooze would end within keyLookupMailWait; end it now.
	_, err = withMail.JobRetry(ctx, job.ID)
	require.NoError(t, err)
	require.Equal(t, rivertype.JobStateCompleted, waitJobs(t, withMailJobs, job.ID)[job.ID].State)
	msgs := smtp.Messages()
	require.Len(t, msgs, 1)
	require.Equal(t, []string{"buyer@example.com"}, msgs[0].To)
	require.Zero(t, b.count(t, `SELECT count(*) FROM key_lookup_emails`), "the address is deleted once its link is sent")
}

func TestKeyLookupEmailWithoutMailIsCancelledOnceStale(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	buyerOrder(t, b.pool, "buyer@example.com")
	orders := &jobs.Orders{Pool: b.pool, River: b.inserter(t), Logger: b.deps.Logger}
	accepted, err := orders.RequestKeyLookup(ctx, "buyer@example.com", netip.MustParseAddr("203.0.113.5"))
	require.NoError(t, err)
	require.True(t, accepted)

	_, noMailJobs := b.mailReplica(t, nil)
	job := waitSnoozed(t, noMailJobs, jobs.SendKeyLookupEmailArgs{}.Kind(), "the replica without mail puts the job back")

	// No replica with mail came within the hour. (River has no way to date
	// a job's creation back: the row is changed directly.)
	_, err = b.pool.Exec(ctx, `UPDATE river_job SET created_at = now() - interval '61 minutes', scheduled_at = now() WHERE id = $1`, job.ID)
	require.NoError(t, err)
	ended := waitJobs(t, noMailJobs, job.ID)[job.ID]
	require.Equal(t, rivertype.JobStateCancelled, ended.State)
	require.Contains(t, jobErrors(ended), "no replica with mail (SMTP_URL) took this find-my-keys request within 1h0m0s")
	require.Zero(t, b.count(t, `SELECT count(*) FROM key_lookup_emails`), "the address is deleted when the request is given up")
}

func TestKeyLookupIsCountedPerAddressAndClientPerNetworkAndPerAddress(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	// Not started: the jobs wait, and only the counting is under test.
	orders := &jobs.Orders{Pool: b.pool, River: b.inserter(t), Logger: b.deps.Logger}
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
	require.Equal(t, jobs.KeyLookupsPerAddress, acceptedOf("buyer@example.com", "198.51.100.1", "198.51.100.1", "198.51.100.1", "198.51.100.1"))
	require.True(t, ask("buyer@example.com", "198.51.100.2"))
	// An IPv6 client is its /64: other host bits are the same client.
	require.Equal(t, jobs.KeyLookupsPerAddress, acceptedOf("buyer@example.com",
		"2001:db8:1:1::1", "2001:db8:1:1::2", "2001:db8:1:1:ffff::3", "2001:db8:1:1::4"))
	require.True(t, ask("buyer@example.com", "2001:db8:1:2::1"), "another /64 of the /48 is another client")
	// The /48's network count is now at 4 of its 10.
	require.Equal(t, jobs.KeyLookupsPerNetwork-4, acceptedOf("someone@example.com",
		"2001:db8:1:3::1", "2001:db8:1:4::1", "2001:db8:1:5::1", "2001:db8:1:6::1", "2001:db8:1:7::1", "2001:db8:1:8::1"))
	require.False(t, ask("another@example.com", "2001:db8:1:9::1"), "the network used its allowance, whatever the address")
	require.True(t, ask("another@example.com", "2001:db8:2:9::1"), "another /48 is another network")

	// Per address, whoever asks: 30. 3 + 1 + 3 + 1 were accepted above.
	accepted := 8
	for i := 10; accepted < jobs.KeyLookupsPerAddressAllClients; i++ {
		accepted += acceptedOf("buyer@example.com", fmt.Sprintf("192.0.2.%d", i), fmt.Sprintf("192.0.2.%d", i), fmt.Sprintf("192.0.2.%d", i))
	}
	require.Equal(t, jobs.KeyLookupsPerAddressAllClients, accepted)
	require.False(t, ask("buyer@example.com", "192.0.2.200"), "a fresh client meets the address's own bound")

	// Every accepted request is one address row and one job naming it; no
	// client is stored in the clear.
	rows := b.count(t, `SELECT count(*) FROM key_lookup_emails`)
	require.Equal(t, jobs.KeyLookupsPerAddressAllClients+jobs.KeyLookupsPerNetwork-4+1, rows)
	expected := make([]rivertest.ExpectedJob, rows)
	for i := range expected {
		expected[i] = rivertest.ExpectedJob{Args: jobs.SendKeyLookupEmailArgs{}}
	}
	for _, job := range rivertest.RequireManyInserted(ctx, t, b.driver(), expected) {
		require.False(t, bytes.Contains(job.EncodedArgs, []byte("@")), "the job names the request, not the address: %s", job.EncodedArgs)
		var args jobs.SendKeyLookupEmailArgs
		require.NoError(t, json.Unmarshal(job.EncodedArgs, &args))
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM key_lookup_emails WHERE id = $1`, args.RequestID), "the job's request row exists")
	}
	require.Zero(t, b.count(t, `SELECT count(*) FROM key_lookup_client_requests
		WHERE length(digest) <> 32 OR position('2001:db8'::bytea IN digest) > 0 OR position('192.0.2'::bytea IN digest) > 0`))
}

func TestKeyLookupEmailJobOfTheOldFormStillSends(t *testing.T) {
	t.Parallel()
	b := setup(t)
	buyerOrder(t, b.pool, "buyer@example.com")
	mailer, smtp := testMailer(t)
	client, w := b.mailReplica(t, mailer)
	// As a replica of the previous version queued it, address and all.
	res, err := client.Insert(context.Background(), jobs.SendKeyLookupEmailArgs{Email: "buyer@example.com"}, nil)
	require.NoError(t, err)
	require.Equal(t, rivertype.JobStateCompleted, waitJobs(t, w, res.Job.ID)[res.Job.ID].State)
	msgs := smtp.Messages()
	require.Len(t, msgs, 1)
	require.Equal(t, []string{"buyer@example.com"}, msgs[0].To)
}
