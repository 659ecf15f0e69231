package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"fulfiller/internal/app"
	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/stripeapi/stripefake"
)

const (
	supportProject = "5b26666d7777a7777c77c4"
	supportPrice   = "price_support30"
	supportStripe  = "sk_test_supportcommands01"
	supportLuarmor = "luarmor-support-key"
)

// supportBundle is a running service, its Luarmor sandbox and the
// environment the commands read.
type supportBundle struct {
	env     map[string]string
	sandbox *sandbox.Sandbox
	stripe  *stripefake.Fake
	main    *app.Main
}

func setupSupport(t *testing.T, policy ...func(*order.Policy)) *supportBundle {
	t.Helper()
	p := order.DefaultPolicy()
	for _, change := range policy {
		change(&p)
	}
	sb := sandbox.New(sandbox.Options{APIKey: supportLuarmor, Projects: []string{supportProject}, Limit: 100000, Window: time.Minute})
	sbSrv := httptest.NewServer(sb)
	t.Cleanup(sbSrv.Close)
	sf := stripefake.New(supportStripe)
	sfSrv := httptest.NewServer(sf)
	t.Cleanup(sfSrv.Close)
	url := postgrestest.NewURL(t)
	m := &app.Main{
		Config: config.Config{DatabaseURL: url, ListenAddr: "127.0.0.1:0", WebhookSecrets: []string{"whsec_support_0123456789abcdef0123456789abcdef"},
			StripeAPIKey: supportStripe, StripeAPIBase: sfSrv.URL, LuarmorAPIKey: supportLuarmor, LuarmorBaseURL: sbSrv.URL,
			LuarmorRateLimit: 100000, LuarmorRateWindow: time.Minute, MaxUnitsPerOrder: config.DefaultMaxUnitsPerOrder,
			ShutdownTimeout: 2 * time.Second, Policy: p},
		Catalog: &catalog.Catalog{Prices: map[string]catalog.Product{supportPrice: {ProjectID: supportProject, KeyDays: 30}}},
		Logger:  sloggerFor(t),
	}
	require.NoError(t, m.Run(context.Background()))
	t.Cleanup(func() { _ = m.Close() })
	return &supportBundle{sandbox: sb, stripe: sf, main: m, env: map[string]string{
		"DATABASE_URL": url, "STRIPE_API_KEY": supportStripe, "STRIPE_API_BASE": sfSrv.URL,
		"STRIPE_WEBHOOK_SECRET": "whsec_support_0123456789abcdef0123456789abcdef", "LUARMOR_API_KEY": supportLuarmor, "LUARMOR_BASE_URL": sbSrv.URL,
	}}
}

// buy pays for one key and waits until the order API shows it.
func (b *supportBundle) buy(t *testing.T, id string) string {
	t.Helper()
	b.stripe.PutSession(stripefake.Session{ID: id, Mode: "payment", PaymentStatus: "paid", Status: "complete",
		CustomerEmail: "support@example.com", Customer: "cus_support1", PaymentIntent: "pi_" + id,
		Items: []stripefake.Item{{PriceID: supportPrice, Quantity: 1}}})
	var key string
	require.Eventually(t, func() bool {
		resp, err := http.Get(b.main.URL() + "/v1/orders/" + id + "?wait=5")
		require.NoError(t, err)
		defer resp.Body.Close()
		var o struct {
			Status string `json:"status"`
			Keys   []struct {
				UserKey string `json:"user_key"`
			} `json:"keys"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&o)
		if o.Status == "fulfilled" && len(o.Keys) == 1 {
			key = o.Keys[0].UserKey
		}
		return key != ""
	}, 30*time.Second, 50*time.Millisecond)
	return key
}

func (b *supportBundle) user(t *testing.T, userKey string) luarmor.User {
	t.Helper()
	for _, u := range b.sandbox.Users(supportProject) {
		if u.UserKey == userKey {
			return u
		}
	}
	t.Fatalf("no key %s in the sandbox", userKey)
	return luarmor.User{}
}

// cli runs the command and returns its output and error.
func (b *supportBundle) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	err := run(context.Background(), args, envOf(b.env), &out, io.Discard)
	return out.String(), err
}

// cliKey runs the command with userKey on its stdin, as an operator
// pastes or pipes it ("-" in args reads it).
func (b *supportBundle) cliKey(t *testing.T, userKey string, args ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	err := runWith(context.Background(), args, envOf(b.env), strings.NewReader(userKey+"\n"), &out, io.Discard)
	return out.String(), err
}

func TestSupportCommandsActThroughTheRunningService(t *testing.T) {
	t.Parallel()
	b := setupSupport(t)
	id := "cs_test_supportcli0001"
	key := b.buy(t, id)

	out, err := b.cliKey(t, key, "orders", "find", "--key", "-")
	require.NoError(t, err)
	require.Contains(t, out, id)
	ref := strings.Fields(out)[0]
	require.True(t, strings.HasPrefix(ref, "ord_"))

	out, err = b.cli(t, "orders", "show", ref)
	require.NoError(t, err)
	require.Contains(t, out, "status fulfilled")
	require.Contains(t, out, key, "the operator's terminal shows full keys")

	for range 2 {
		out, err = b.cliKey(t, key, "keys", "blacklist", "-", "--reason", "Fraud ring")
		require.NoError(t, err, out)
		require.Contains(t, out, "done: the key is blacklisted")
		require.Equal(t, 1, b.user(t, key).Banned)
		require.Equal(t, "Fraud ring", b.user(t, key).BanReason)
	}
	out, err = b.cliKey(t, key, "keys", "unban", "-")
	require.NoError(t, err, out)
	require.Contains(t, out, "done: the key is active")
	require.Equal(t, 0, b.user(t, key).Banned)

	require.NoError(t, b.sandbox.Execute(supportProject, key, "pc-1"))
	out, err = b.cliKey(t, key, "keys", "reset-hwid", "-")
	require.NoError(t, err, out)
	require.Empty(t, b.user(t, key).Identifier)

	out, err = b.cliKey(t, key, "keys", "set-discord", "-", "123456789012345678")
	require.NoError(t, err, out)
	require.Equal(t, "123456789012345678", b.user(t, key).DiscordID)
	_, err = b.cliKey(t, key, "keys", "set-discord", "-", "name#1234")
	require.ErrorContains(t, err, "snowflake")

	out, err = b.cliKey(t, key, "keys", "reissue", "-")
	require.NoError(t, err, out)
	require.Contains(t, out, "new key: ")
	fresh := strings.Fields(strings.SplitN(out, "new key: ", 2)[1])[0]
	require.NotEqual(t, key, fresh)
	require.Equal(t, 1, b.user(t, key).Banned, "the old key is revoked")
	require.Equal(t, 0, b.user(t, fresh).Banned)
	out, err = b.cliKey(t, key, "keys", "reissue", "-")
	require.NoError(t, err, out)
	require.Contains(t, out, "new key: "+fresh, "a second run reports the same reissue")
	require.Len(t, b.sandbox.Users(supportProject), 2)

	out, err = b.cliKey(t, fresh, "keys", "revoke", "-")
	require.NoError(t, err, out)
	require.Equal(t, 1, b.user(t, fresh).Banned)

	_, err = b.cliKey(t, "NoSuchKey0123456789", "keys", "blacklist", "-")
	require.ErrorContains(t, err, "no order holds this key")
	_, err = b.cli(t, "orders", "retry", id)
	require.ErrorContains(t, err, "not failed")
	_, err = b.cliKey(t, key, "keys", "frobnicate", "-")
	require.ErrorIs(t, err, errUsage)
}

// deliver sends the running service a signed event of typ about object.
func (b *supportBundle) deliver(t *testing.T, typ string, object map[string]any) {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"id": "evt_" + object["id"].(string), "object": "event", "api_version": stripe.APIVersion, "created": time.Now().Unix(),
		"type": typ, "livemode": false, "data": map[string]any{"object": object},
	})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, b.main.URL()+"/webhooks/stripe", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Stripe-Signature", webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
		Payload: body, Secret: b.env["STRIPE_WEBHOOK_SECRET"], Timestamp: time.Now()}).Header)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// orderStatus reads the order API's status of an order and of its keys.
func (b *supportBundle) orderStatus(t *testing.T, id string) (string, []string) {
	t.Helper()
	resp, err := http.Get(b.main.URL() + "/v1/orders/" + id)
	require.NoError(t, err)
	defer resp.Body.Close()
	var o struct {
		Status string `json:"status"`
		Keys   []struct {
			Status string `json:"status"`
		} `json:"keys"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&o))
	keys := make([]string, len(o.Keys))
	for i, k := range o.Keys {
		keys[i] = k.Status
	}
	return o.Status, keys
}

// An early fraud warning revoked the order; support decides the payment
// stands and lifts it from the command line: the key works again.
func TestLiftRevocationCommandRestoresAnOrderAFraudWarningRevoked(t *testing.T) {
	t.Parallel()
	b := setupSupport(t, func(p *order.Policy) { p.RevokeOnEarlyFraudWarning = true })
	id := "cs_test_supportlift0001"
	key := b.buy(t, id)
	efw := "issfr_supportlift0001"
	b.stripe.PutObject(stripefake.KindCharge, "ch_supportlift0001", map[string]any{"payment_intent": "pi_" + id, "amount": 3000, "paid": true})
	b.deliver(t, "radar.early_fraud_warning.created", map[string]any{
		"id": efw, "object": "radar.early_fraud_warning", "charge": "ch_supportlift0001", "payment_intent": "pi_" + id,
		"fraud_type": "made_with_stolen_card", "actionable": true,
	})
	require.Eventually(t, func() bool {
		status, keys := b.orderStatus(t, id)
		return status == "revoked" && len(keys) == 1 && keys[0] == "blacklisted"
	}, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, 1, b.user(t, key).Banned)

	out, err := b.cli(t, "orders", "show", id)
	require.NoError(t, err)
	require.Contains(t, out, "early_fraud_warning "+efw)

	out, err = b.cli(t, "orders", "lift-revocation", id, efw, "--wait", "30s")
	require.NoError(t, err, out)
	require.Contains(t, out, "is fulfilled")
	require.Contains(t, out, "active")
	require.NotContains(t, out, key, "the answer names the key by its last characters only")
	require.Equal(t, 0, b.user(t, key).Banned)
	status, keys := b.orderStatus(t, id)
	require.Equal(t, "fulfilled", status)
	require.Equal(t, []string{"active"}, keys)

	_, err = b.cli(t, "orders", "lift-revocation", id, efw)
	require.ErrorContains(t, err, "lifted already")
	_, err = b.cli(t, "orders", "lift-revocation", id, "issfr_nosuchwarning")
	require.ErrorContains(t, err, "no revocation issfr_nosuchwarning")
	_, err = b.cli(t, "orders", "lift-revocation", id)
	require.ErrorIs(t, err, errUsage)
}

// sloggerFor sends the service's warnings to the test's log.
func sloggerFor(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
