package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/jobs"
	"fulfiller/internal/stripeapi/stripefake"
)

// withAdminLogin turns on the admin login (and with it the River UI).
func withAdminLogin() func(*options) {
	return withConfig(func(c *config.Config) { c.AdminUser, c.AdminPassword = adminUser, adminPassword })
}

func decodeJSON(t *testing.T, body string, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal([]byte(body), v), body)
}

// send makes one request and returns its status, headers and body.
func send(t *testing.T, method, url, body string, header http.Header) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	for name, values := range header {
		req.Header[name] = values
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(raw)
}

// adminCall calls the internal listener with token ("" for none).
func (b *bundle) adminCall(t *testing.T, method, path, body, token string) apiAnswer {
	t.Helper()
	var header http.Header
	if token != "" {
		header = bearer(token)
	}
	status, h, raw := send(t, method, b.AdminURL+path, body, header)
	return apiAnswer{status: status, header: h, body: []byte(raw)}
}

func bearer(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

func login(user, password string) http.Header {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, password)
	return req.Header
}

// TestSupportSurfaceIsNotOnThePublicListener: with every admin credential
// at hand, the public listener has no River UI, no admin API, no metrics
// and no probes; the internal listener has them all.
func TestSupportSurfaceIsNotOnThePublicListener(t *testing.T) {
	t.Parallel()
	b := setup(t, withAdminLogin())
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	key := o.Keys[0].UserKey
	for _, c := range []struct{ method, path, body string }{
		{http.MethodGet, "/riverui/", ""},
		{http.MethodGet, "/riverui/api/jobs?limit=1", ""},
		{http.MethodPost, "/riverui/api/jobs/cancel", `{"ids":["1"]}`},
		{http.MethodGet, "/v1/admin/orders/" + s.ID, ""},
		{http.MethodGet, "/v1/admin/audit", ""},
		{http.MethodPost, "/v1/admin/keys/blacklist", keyBody(key)},
		{http.MethodPost, "/v1/admin/orders/" + s.ID + "/retry", ""},
		{http.MethodPost, "/v1/admin/orders/" + s.ID + "/resend-email", ""},
		{http.MethodPost, "/v1/orders/" + s.ID + "/retry", ""},
		{http.MethodPost, "/v1/orders/" + s.ID + "/resend-email", ""},
		{http.MethodGet, "/metrics", ""},
		{http.MethodGet, "/healthz", ""},
		{http.MethodGet, "/readyz", ""},
	} {
		for name, creds := range map[string]http.Header{
			"admin token": bearer(adminToken), "admin login": login(adminUser, adminPassword), "shop token": bearer(shopToken),
		} {
			status, _, body := send(t, c.method, b.URL+c.path, c.body, creds)
			require.Equal(t, http.StatusNotFound, status, "%s %s with the %s on the public listener: %s", c.method, c.path, name, body)
		}
	}
	require.Equal(t, 0, b.user(t, key).Banned, "nothing was done")

	for _, path := range []string{"/riverui/", "/v1/admin/orders/" + s.ID, "/v1/admin/audit", "/metrics", "/healthz", "/readyz"} {
		status, _, body := send(t, http.MethodGet, b.AdminURL+path, "", login(adminUser, adminPassword))
		require.Equal(t, http.StatusOK, status, "GET %s on the internal listener: %s", path, body)
	}
}

// TestShopTokenReadsListingsAndNothingElse: the storefront's token lists
// a customer's keys and is refused by every support action.
func TestShopTokenReadsListingsAndNothingElse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	key := o.Keys[0].UserKey

	status, _, body := send(t, http.MethodGet, b.URL+"/v1/customers/"+s.Customer+"/keys", "", bearer(shopToken))
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, key)

	for _, c := range []struct{ method, path, body string }{
		{http.MethodGet, "/v1/admin/orders/" + s.ID, ""},
		{http.MethodPost, "/v1/admin/keys/blacklist", keyBody(key)},
		{http.MethodPost, "/v1/admin/keys/revoke", keyBody(key)},
		{http.MethodPost, "/v1/admin/keys/reissue", keyBody(key)},
		{http.MethodPost, "/v1/admin/keys/set-discord", `{"user_key":"` + key + `","discord_id":"123456789012345678"}`},
		{http.MethodPost, "/v1/admin/orders/" + s.ID + "/retry", ""},
	} {
		status, header, body := send(t, c.method, b.AdminURL+c.path, c.body, bearer(shopToken))
		require.Equal(t, http.StatusUnauthorized, status, "%s %s: %s", c.method, c.path, body)
		require.Contains(t, header.Get("WWW-Authenticate"), "Bearer")
	}
	require.Equal(t, 0, b.user(t, key).Banned, "nothing was done")
	require.Equal(t, 0, b.Count(t, `SELECT count(*) FROM support_audit`))
}

// TestInternalListenerRefusesCrossSiteRequests: a page on another site
// that posts to the River UI with the admin's cached login (a text/plain
// form post needs no preflight) is refused, and the waiting job it names
// stays waiting. The same request from a client that is no browser goes
// through, and is audited.
func TestInternalListenerRefusesCrossSiteRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, withAdminLogin())
	ctx := context.Background()
	res, err := b.Main.River.Insert(ctx, jobs.ResumeOrdersArgs{}, &river.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	cancel := fmt.Sprintf(`{"ids":["%d"]}`, res.Job.ID)

	for name, extra := range map[string]http.Header{
		"another origin":     {"Origin": {"http://evil.example"}, "Content-Type": {"text/plain"}},
		"cross-site fetch":   {"Sec-Fetch-Site": {"cross-site"}, "Content-Type": {"text/plain"}},
		"same-site, not ori": {"Sec-Fetch-Site": {"same-site"}, "Content-Type": {"application/json"}},
	} {
		header := login(adminUser, adminPassword)
		for k, v := range extra {
			header[k] = v
		}
		status, _, body := send(t, http.MethodPost, b.AdminURL+"/riverui/api/jobs/cancel", cancel, header)
		require.Equal(t, http.StatusForbidden, status, "%s: %s", name, body)
		header.Set("Authorization", "Bearer "+adminToken)
		status, _, body = send(t, http.MethodPost, b.AdminURL+"/v1/admin/orders/ord_000000000000/retry", "", header)
		require.Equal(t, http.StatusForbidden, status, "%s on the admin API: %s", name, body)
	}
	job, err := b.Main.River.JobGet(ctx, res.Job.ID)
	require.NoError(t, err)
	require.Equal(t, rivertype.JobStateScheduled, job.State, "the job is untouched")
	require.Equal(t, 0, b.Count(t, `SELECT count(*) FROM support_audit`), "nothing was done, so nothing audited")

	// The pages themselves are neither framed nor cached.
	_, header, _ := send(t, http.MethodGet, b.AdminURL+"/riverui/", "", login(adminUser, adminPassword))
	require.Contains(t, header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
	require.Equal(t, "DENY", header.Get("X-Frame-Options"))
	require.Equal(t, "no-store", header.Get("Cache-Control"))

	// A same-origin request (the UI's own) is carried out and audited.
	header = login(adminUser, adminPassword)
	header.Set("Sec-Fetch-Site", "same-origin")
	header.Set("Content-Type", "application/json")
	status, _, body := send(t, http.MethodPost, b.AdminURL+"/riverui/api/jobs/cancel", cancel, header)
	require.Equal(t, http.StatusOK, status, body)
	job, err = b.Main.River.JobGet(ctx, res.Job.ID)
	require.NoError(t, err)
	require.Equal(t, rivertype.JobStateCancelled, job.State)
	var actor, path string
	require.NoError(t, b.Pool.QueryRow(ctx, `SELECT actor, detail->>'path' FROM support_audit
		WHERE action = 'riverui' AND detail->'job_ids' ? $1`, fmt.Sprint(res.Job.ID)).Scan(&actor, &path))
	require.Equal(t, "admin:"+adminUser, actor)
	require.Equal(t, "/api/jobs/cancel", path)
}

// TestSupportActionsAreAudited: each action names who took it, what, on
// which order and key (by its tail), and why; the admin API lists them.
func TestSupportActionsAreAudited(t *testing.T) {
	t.Parallel()
	b := setup(t, withAdminLogin())
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	key := o.Keys[0].UserKey

	status, _, body := send(t, http.MethodPost, b.AdminURL+"/v1/admin/keys/blacklist",
		`{"user_key":"`+key+`","reason":"chargeback abuse"}`, bearer(adminToken))
	require.Equal(t, http.StatusAccepted, status, body)
	header := login(adminUser, adminPassword)
	status, _, body = send(t, http.MethodPost, b.AdminURL+"/v1/admin/keys/unban", keyBody(key), header)
	require.Equal(t, http.StatusAccepted, status, body)

	status, _, body = send(t, http.MethodGet, b.AdminURL+"/v1/admin/audit?order="+s.ID, "", bearer(adminToken))
	require.Equal(t, http.StatusOK, status, body)
	var listed struct {
		Entries []struct {
			ID       int64          `json:"id"`
			At       int64          `json:"at"`
			Actor    string         `json:"actor"`
			Action   string         `json:"action"`
			OrderID  int64          `json:"order_id"`
			OrderRef string         `json:"order_ref"`
			KeyTail  string         `json:"key_tail"`
			Reason   string         `json:"reason"`
			Detail   map[string]any `json:"detail"`
		} `json:"entries"`
	}
	decodeJSON(t, body, &listed)
	require.Len(t, listed.Entries, 2)
	unban, ban := listed.Entries[0], listed.Entries[1]
	require.Equal(t, "unban", unban.Action, "newest first")
	require.Equal(t, "admin:"+adminUser, unban.Actor)
	require.Equal(t, "blacklist", ban.Action)
	require.Equal(t, "admin-token", ban.Actor)
	require.Equal(t, "chargeback abuse", ban.Reason)
	require.Equal(t, "…"+key[len(key)-4:], ban.KeyTail)
	require.NotZero(t, ban.OrderID)
	require.True(t, strings.HasPrefix(ban.OrderRef, "ord_"))
	require.NotZero(t, ban.Detail["job_id"])
	require.WithinDuration(t, time.Now(), time.Unix(ban.At, 0), time.Minute)
	require.NotContains(t, body, key, "the audit log grants nothing")
	require.NotContains(t, body, s.ID)

	status, _, body = send(t, http.MethodGet, b.AdminURL+"/v1/admin/audit?before="+fmt.Sprint(unban.ID)+"&limit=1", "", bearer(adminToken))
	require.Equal(t, http.StatusOK, status, body)
	decodeJSON(t, body, &listed)
	require.Len(t, listed.Entries, 1)
	require.Equal(t, ban.ID, listed.Entries[0].ID, "paged by before=")

	for _, q := range []string{"limit=0", "before=x", "color=red", "order=ord_000000000000"} {
		status, _, body = send(t, http.MethodGet, b.AdminURL+"/v1/admin/audit?"+q, "", bearer(adminToken))
		require.Contains(t, []int{http.StatusBadRequest, http.StatusNotFound}, status, "%s: %s", q, body)
	}
}

// TestAdminLoginFailuresAreThrottledAcrossClients: guessers spread over
// many addresses, each within its own allowance, are held back together;
// past the shared allowance even a right password is not looked at.
func TestAdminLoginFailuresAreThrottledAcrossClients(t *testing.T) {
	t.Parallel()
	b := setup(t, withAdminLogin(), withConfig(func(c *config.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}))
	guess := func(client, password string) int {
		header := login(adminUser, password)
		header.Set("X-Forwarded-For", client)
		status, _, _ := send(t, http.MethodGet, b.AdminURL+"/v1/admin/audit", "", header)
		return status
	}
	refused := 0
	for client := range 20 {
		for attempt := range 8 { // under the per-client burst of 10
			switch status := guess(fmt.Sprintf("2001:db8:%x::1", client), fmt.Sprint("guess-", attempt)); status {
			case http.StatusUnauthorized:
			case http.StatusTooManyRequests:
				refused++
			default:
				t.Fatalf("unexpected status %d", status)
			}
		}
	}
	require.Positive(t, refused, "160 failures from 20 networks outrun the shared allowance")
	require.Equal(t, http.StatusTooManyRequests, guess("2001:db8:ffff::1", adminPassword),
		"a fresh address with the right password waits too: the guessers may be anywhere")
}
