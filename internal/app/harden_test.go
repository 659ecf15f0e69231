package app_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/logging/logtest"
)

const (
	adminUser     = "ops"
	adminPassword = "correct-horse-battery"
	// adminToken is the admin API's bearer token (ADMIN_API_TOKEN).
	adminToken = "admin-token-0123456789abcdef0123"
)

func TestShopEndpointsAre404WhileTheTokenIsUnset(t *testing.T) {
	t.Parallel()
	b := setup(t, withConfig(func(c *config.Config) { c.ShopAPIToken = "" }))
	for _, c := range []struct{ method, path, body string }{
		{http.MethodPost, "/v1/keys/search", `{"email":"a@example.com"}`},
		{http.MethodGet, "/v1/keys?email=a@example.com", ""},
		{http.MethodGet, "/v1/customers/cus_123/keys", ""},
	} {
		a := b.call(t, c.method, c.path, c.body, "", "anything")
		require.Equal(t, http.StatusNotFound, a.status, c.path)
		require.Equal(t, "not_found", a.code(t))
		require.Empty(t, a.header.Get("WWW-Authenticate"))
	}
}

func TestWrongBearerTokensAre401ThenRateLimitedPerClientAndLoggedSampled(t *testing.T) {
	t.Parallel()
	var log logtest.Buffer
	b := setup(t, withLogger(slog.New(slog.NewJSONHandler(&log, nil))), withConfig(func(c *config.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}))
	const path = "/v1/customers/cus_Buyer123/keys"
	const guesser = "198.51.100.7"

	first := b.call(t, http.MethodGet, path, "", guesser, "guess-0")
	require.Equal(t, http.StatusUnauthorized, first.status)
	require.Equal(t, `Bearer realm="fulfiller"`, first.header.Get("WWW-Authenticate"))
	missing := b.call(t, http.MethodGet, path, "", guesser, "")
	require.Equal(t, http.StatusUnauthorized, missing.status, "no token at all is a failure too")
	require.Contains(t, missing.header.Get("WWW-Authenticate"), "Bearer")

	// The client's burst of failures is spent: from then on it is
	// refused without its token being checked, the right one included.
	var limited apiAnswer
	for i := range 50 {
		limited = b.call(t, http.MethodGet, path, "", guesser, fmt.Sprint("guess-", i+1))
		if limited.status == http.StatusTooManyRequests {
			break
		}
		require.Equal(t, http.StatusUnauthorized, limited.status)
	}
	require.Equal(t, http.StatusTooManyRequests, limited.status, "failures past the burst are refused")
	require.Equal(t, "6", limited.header.Get("Retry-After"))
	require.Equal(t, "rate_limited", limited.code(t))
	require.Equal(t, http.StatusTooManyRequests, b.call(t, http.MethodGet, path, "", guesser, shopToken).status,
		"a right guess after the limit is not even checked")

	// Another client is not held back by the guesser.
	require.Equal(t, http.StatusOK, b.call(t, http.MethodGet, path, "", "203.0.113.9", shopToken).status)
	require.Equal(t, http.StatusUnauthorized, b.call(t, http.MethodGet, path, "", "203.0.113.9", "wrong").status)

	// A dozen refusals of one client are one line, which counts the rest
	// when it is next logged; the other client has its own line.
	lines := strings.Count(log.String(), guesser)
	require.Equal(t, 1, lines, "one sampled line for the guessing client: %s", log.String())
	require.Equal(t, 1, strings.Count(log.String(), "203.0.113.9"))
	require.NotContains(t, log.String(), "guess-")
	require.NotContains(t, log.String(), shopToken)
}

func TestRiverUIIsOffWithoutAdminCredentials(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, path := range []string{"/riverui/", "/riverui/api/jobs?limit=1"} {
		req, err := http.NewRequest(http.MethodGet, b.AdminURL+path, nil)
		require.NoError(t, err)
		req.SetBasicAuth(adminUser, adminPassword)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode, path)
	}
}

func TestRiverUIIsGuardedByBasicAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, withConfig(func(c *config.Config) { c.AdminUser, c.AdminPassword = adminUser, adminPassword }))
	get := func(path string, auth func(*http.Request)) (*http.Response, string) {
		req, err := http.NewRequest(http.MethodGet, b.AdminURL+path, nil)
		require.NoError(t, err)
		auth(req)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, string(body)
	}
	for _, path := range []string{"/riverui/", "/riverui/api/jobs?limit=1"} {
		for name, auth := range map[string]func(*http.Request){
			"no credentials": func(*http.Request) {},
			"wrong password": func(r *http.Request) { r.SetBasicAuth(adminUser, adminPassword+"x") },
			"wrong user":     func(r *http.Request) { r.SetBasicAuth("admin", adminPassword) },
			"bearer instead": func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+adminPassword) },
		} {
			resp, _ := get(path, auth)
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s %s", path, name)
			require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Basic ")
		}
	}
	page, body := get("/riverui/", func(r *http.Request) { r.SetBasicAuth(adminUser, adminPassword) })
	require.Equal(t, http.StatusOK, page.StatusCode)
	require.Contains(t, body, "<html")
	api, body := get("/riverui/api/jobs?limit=1", func(r *http.Request) { r.SetBasicAuth(adminUser, adminPassword) })
	require.Equal(t, http.StatusOK, api.StatusCode, body)
	require.Contains(t, api.Header.Get("Content-Type"), "application/json")
}

func TestReadyzFailsWhileMigrationsArePending(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ready := func() apiAnswer {
		resp, err := http.Get(b.AdminURL + "/readyz")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return apiAnswer{status: resp.StatusCode, header: resp.Header, body: body}
	}
	require.Equal(t, http.StatusOK, ready().status)

	ctx := context.Background()
	var version int
	var name string
	require.NoError(t, b.Pool.QueryRow(ctx, `DELETE FROM fulfiller_migrations
		WHERE version = (SELECT max(version) FROM fulfiller_migrations) RETURNING version, name`).Scan(&version, &name))
	a := ready()
	require.Equal(t, http.StatusServiceUnavailable, a.status)
	require.Contains(t, string(a.body), name)
	require.Contains(t, string(a.body), "fulfiller migrate")

	_, err := b.Pool.Exec(ctx, `INSERT INTO fulfiller_migrations (version, name) VALUES ($1, $2)`, version, name)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, ready().status)

	// A version this binary does not know (a newer replica migrated
	// first) is no reason to stop serving.
	_, err = b.Pool.Exec(ctx, `INSERT INTO fulfiller_migrations (version, name) VALUES (99999, '99999_future.sql')`)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, ready().status)

	// River's schema counts too.
	_, err = b.Pool.Exec(ctx, `DELETE FROM river_migration WHERE version = (SELECT max(version) FROM river_migration)`)
	require.NoError(t, err)
	a = ready()
	require.Equal(t, http.StatusServiceUnavailable, a.status)
	require.Contains(t, string(a.body), "river ")
}

func TestOversizedHeadersAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	req, err := http.NewRequest(http.MethodGet, b.URL+"/openapi.json", nil)
	require.NoError(t, err)
	req.Header.Set("X-Padding", strings.Repeat("a", 100<<10))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
}

// getOn sends GET path on an open connection and reads the status line,
// within deadline.
func getOn(conn net.Conn, r *bufio.Reader, path string, deadline time.Duration) (string, error) {
	if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: fulfiller\r\n\r\n"); err != nil {
		return "", err
	}
	_ = conn.SetReadDeadline(time.Now().Add(deadline))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Status, nil
}

func TestConnectionsPastTheCapWaitWhileEveryOpenOneIsBusy(t *testing.T) {
	t.Parallel()
	b := setup(t, withConfig(func(c *config.Config) { c.MaxConnections = 2 }))
	id := fulfillertest.NewID("cs_test_")
	_, err := b.Pool.Exec(context.Background(), `INSERT INTO orders (checkout_session_id) VALUES ($1)`, id)
	require.NoError(t, err)
	dial := func(from string) (net.Conn, *bufio.Reader) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		conn, err := d.Dial("tcp", b.Main.Addr())
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() }) // the test may have closed it already
		return conn, bufio.NewReader(conn)
	}
	// Both places are busy: a long-poll held on a pending order, and a
	// request whose headers are still coming.
	poll, _ := dial("127.0.0.1")
	_, err = io.WriteString(poll, "GET /v1/orders/"+id+"?wait=30 HTTP/1.1\r\nHost: fulfiller\r\n\r\n")
	require.NoError(t, err)
	// A poll: a long-poll being held announces nothing.
	require.Eventually(t, func() bool { return b.Main.Changes.Waiters() == 1 }, 10*time.Second, time.Millisecond)
	slow, slowR := dial("127.0.0.1")
	_, err = io.WriteString(slow, "GET /openapi.json HTTP/1.1\r\n")
	require.NoError(t, err)

	// A third connection, from another client, is held in the accept
	// queue: its request is not read while both places are busy.
	third, thirdR := dial("127.0.0.2")
	_, err = getOn(third, thirdR, "/openapi.json", 300*time.Millisecond)
	var netErr net.Error
	require.ErrorAs(t, err, &netErr, "the third connection waits")
	require.True(t, netErr.Timeout())

	// The open ones are still served meanwhile.
	_, err = io.WriteString(slow, "Host: fulfiller\r\n\r\n")
	require.NoError(t, err)
	_ = slow.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(slowR, nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// The answered connection turns idle and gives its place to the
	// waiting one, whose request was kept, not dropped.
	_ = third.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err = http.ReadResponse(thirdR, nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	_, err = slowR.ReadByte()
	require.ErrorIs(t, err, io.EOF, "the idle connection was closed to make room")
	require.Equal(t, 1, b.Main.Changes.Waiters(), "the long-poll is still held")
}

func TestBadlySignedWebhooksAreLoggedSampledPerClient(t *testing.T) {
	t.Parallel()
	var log logtest.Buffer
	b := setup(t, withLogger(slog.New(slog.NewJSONHandler(&log, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	body := []byte(`{"id":"evt_forged","object":"event"}`)
	sig := fulfillertest.Sign(body, "whsec_someone_else_0123456789abcdef0123456789", time.Now())
	client := &http.Client{}
	for range 2000 {
		req, err := http.NewRequest(http.MethodPost, b.URL+"/webhooks/stripe", strings.NewReader(string(body)))
		require.NoError(t, err)
		req.Header.Set("Stripe-Signature", sig)
		resp, err := client.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	}
	lines := strings.Count(log.String(), `"msg":"webhook rejected"`)
	// One line, then one every ten seconds: a slow run may log a few.
	require.GreaterOrEqual(t, lines, 1)
	require.Less(t, lines, 20, "2,000 forged posts must not write 2,000 lines")
}
