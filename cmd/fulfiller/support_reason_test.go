package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/logging"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
)

// Every key action at the terminal takes --reason, which the audit log
// keeps as the console's; for unban and set-discord it is for the log
// alone.
func TestKeyCommandsKeepTheirReasonInTheAuditLog(t *testing.T) {
	t.Parallel()
	s := startSupport(t)
	sess, key := s.buy(t)

	_, err := s.cliKey(t, key, "keys", "blacklist", "-", "--reason", "Chargeback ring")
	require.NoError(t, err)
	_, err = s.cliKey(t, key, "keys", "unban", "-", "--reason", "the chargeback was withdrawn")
	require.NoError(t, err)
	_, err = s.cliKey(t, key, "keys", "set-discord", "-", "123456789012345678", "--reason", "buyer asked in a ticket")
	require.NoError(t, err)
	_, err = s.cli(t, "orders", "resend-email", sess.ID, "--reason", "buyer lost the email")
	require.ErrorContains(t, err, "keys by email is off: set SMTP_URL")

	entries, err := postgres.ListAudit(context.Background(), s.Pool, postgres.AuditQuery{Limit: 10})
	require.NoError(t, err)
	got := map[string]string{}
	for _, e := range entries {
		require.Equal(t, logging.OrderRef(sess.ID), e.OrderRef)
		got[e.Action] = e.Reason
	}
	require.Equal(t, map[string]string{"blacklist": "Chargeback ring", "unban": "the chargeback was withdrawn",
		"set-discord": "buyer asked in a ticket"}, got, "the mail-off refusal did nothing, so audited nothing")
}

// The stock commands take --reason too; it is bounded as the console's.
func TestStockCommandsKeepTheirReasonInTheAuditLog(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	env := envOf(map[string]string{
		"DATABASE_URL": pool.Config().ConnString(), "STRIPE_WEBHOOK_SECRET": testWebhookSecret, "STRIPE_API_KEY": "sk_test_x",
		"LUARMOR_API_KEY": "k", "CATALOG_FILE": "../../catalog.example.yaml",
	})
	stock := func(args ...string) (string, error) {
		var out strings.Builder
		err := run(context.Background(), append([]string{"stock"}, args...), env, &out, io.Discard)
		return out.String(), err
	}
	_, err := stock("reconcile", "--reason", "two\nlines", "--wait", "1s")
	require.ErrorContains(t, err, "one line")
	// No service runs here to carry them out: queued and audited, then
	// the wait gives up.
	out, err := stock("reconcile", "--reason", "keys made by hand in the dashboard", "--wait", "1s")
	require.Error(t, err)
	require.Contains(t, out, "stock reconciliation queued")
	out, err = stock("delete", "price_dev_monthly", "--reason", "price taken out of sale", "--wait", "1s")
	require.Error(t, err)
	require.Contains(t, out, "deletion of the stock of price_dev_monthly queued")

	entries, err := postgres.ListAudit(context.Background(), pool, postgres.AuditQuery{Limit: 10})
	require.NoError(t, err)
	require.Len(t, entries, 2)
	require.Equal(t, "stock-delete", entries[0].Action)
	require.Equal(t, "price taken out of sale", entries[0].Reason)
	require.Equal(t, "stock-reconcile", entries[1].Action)
	require.Equal(t, "keys made by hand in the dashboard", entries[1].Reason)
}
