package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	webhookhandler "fulfiller/internal/webhook"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/stripeapi/stripefake"
)

// requireNothingStored checks that a rejected webhook left no trace.
func (b *bundle) requireNothingStored(t *testing.T) {
	t.Helper()
	require.Zero(t, b.Count(t, "SELECT count(*) FROM stripe_events"))
	require.Zero(t, b.Count(t, "SELECT count(*) FROM orders"))
	require.Zero(t, b.Count(t, "SELECT count(*) FROM river_job"))
}

func TestBadWebhooksAreRefusedAndStoreNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	body := b.SessionEvent(t, "checkout.session.completed", s.ID)
	now := time.Now()

	garbage := []byte("this is not json")
	huge := append([]byte(`{"id":"evt_x","padding":"`), bytes.Repeat([]byte("a"), webhookhandler.MaxBodyBytes)...)
	huge = append(huge, []byte(`"}`)...)
	noObjectID := fulfillertest.Event(t, "checkout.session.completed", []byte(`{"object":"checkout.session"}`))
	notASession := fulfillertest.Event(t, "checkout.session.completed", []byte(`{"id":"in_x","object":"invoice"}`))

	cases := []struct {
		name   string
		body   []byte
		header string
		status int
		error  string
	}{
		{"missing signature", body, "", 400, "missing Stripe-Signature"},
		{"malformed header", body, "t=abc,v1=zz", 400, "malformed"},
		{"wrong secret", body, fulfillertest.Sign(body, "whsec_someone_else", now), 400, "no valid signature"},
		{"tampered body", append(bytes.Clone(body[:len(body)-1]), ' ', '}'), fulfillertest.Sign(body, b.Secret, now), 400, "no valid signature"},
		{"stale timestamp", body, fulfillertest.Sign(body, b.Secret, now.Add(-6*time.Minute)), 400, "tolerance"},
		{"signed garbage", garbage, fulfillertest.Sign(garbage, b.Secret, now), 400, "not a JSON Stripe event"},
		{"oversized", huge, fulfillertest.Sign(huge, b.Secret, now), 413, "larger than"},
		{"object without id", noObjectID, fulfillertest.Sign(noObjectID, b.Secret, now), 400, "no id"},
		{"object not a session", notASession, fulfillertest.Sign(notASession, b.Secret, now), 400, "not a checkout.session"},
	}
	for _, tc := range cases {
		a := b.PostWebhook(t, tc.body, tc.header)
		require.Equal(t, tc.status, a.Status, "%s: %s", tc.name, a.Body)
		var r struct{ Error string }
		require.NoError(t, json.Unmarshal(a.Body, &r), tc.name)
		require.Contains(t, r.Error, tc.error, tc.name)
		require.NotContains(t, string(a.Body), b.Secret, tc.name)
	}
	b.requireNothingStored(t)
}

func TestSecretRollAcceptsEitherSecretAndSeveralSignatures(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, secret := range []string{secretOld, secretNew} {
		s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
		body := b.SessionEvent(t, "checkout.session.completed", s.ID)
		a := b.PostWebhook(t, body, fulfillertest.Sign(body, secret, time.Now()))
		require.Equal(t, http.StatusOK, a.Status, string(a.Body))
	}
	// During a roll Stripe sends one v1 entry per secret; one unknown
	// secret's entry must not spoil the match.
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	body := b.SessionEvent(t, "checkout.session.completed", s.ID)
	ts := time.Now()
	other := webhook.ComputeSignature(ts, body, "whsec_not_configured")
	mine := webhook.ComputeSignature(ts, body, secretNew)
	header := fmt.Sprintf("t=%d,v1=%x,v1=%x,v0=ignored", ts.Unix(), other, mine)
	a := b.PostWebhook(t, body, header)
	require.Equal(t, http.StatusOK, a.Status, string(a.Body))
	require.Equal(t, 3, b.Count(t, "SELECT count(*) FROM stripe_events"))
}

func TestUnhandledEventTypeIsRecordedOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := fulfillertest.Event(t, "customer.created", []byte(`{"id":"cus_123","object":"customer"}`))
	b.Deliver(t, body)
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM stripe_events WHERE NOT handled AND object_id = 'cus_123'"))
	require.Zero(t, b.Count(t, "SELECT count(*) FROM river_job"))
	require.Zero(t, b.Count(t, "SELECT count(*) FROM orders"))
}

func TestOtherAPIVersionIsStillHandled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	obj, _ := b.Stripe.SessionJSON(s.ID)
	body := []byte(strings.Replace(string(fulfillertest.Event(t, "checkout.session.completed", obj)),
		`"api_version":"`+stripe.APIVersion+`"`, `"api_version":"2024-06-20"`, 1))
	b.Deliver(t, body)
	b.WaitOrder(t, s.ID, "fulfilled")
}

func TestDatabaseDownAnswers503(t *testing.T) {
	t.Parallel()
	// A pool whose server is gone: connections fail at first use.
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	h := webhookhandler.New(webhookhandler.Config{Secrets: []string{secretNew}, Pool: pool, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(h.Close)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	body := fulfillertest.Event(t, "checkout.session.completed", []byte(`{"id":"cs_test_down","object":"checkout.session","payment_status":"paid"}`))
	req, err := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Stripe-Signature", fulfillertest.Sign(body, secretNew, time.Now()))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(out))
	require.NotContains(t, string(out), "nobody", "no connection details leak")
}
