package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/jobs"
	"fulfiller/internal/logging/logtest"
	"fulfiller/internal/mail"
	"fulfiller/internal/mail/mailtest"
	"fulfiller/internal/stripeapi/stripefake"
)

type lookupBundle struct {
	*mailBundle
	logs *logtest.Buffer
}

// setupLookup starts the service with mail pointed at a test SMTP server,
// its log (every level) in a buffer, and the loopback as a trusted proxy,
// so a test can speak for several clients through X-Forwarded-For; more
// options (a policy) follow.
func setupLookup(t *testing.T, more ...func(*options)) *lookupBundle {
	t.Helper()
	srv := mailtest.Start(t, smtpUser, smtpPassword)
	server, err := mail.ParseSMTPURL(srv.URL())
	require.NoError(t, err)
	logs := &logtest.Buffer{}
	b := setup(t, append([]func(*options){withLogger(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		withConfig(func(c *config.Config) {
			c.Mail = mail.Settings{SMTP: server, From: "Shop <keys@shop.example>", PublicBaseURL: publicBase}
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		})}, more...)...)
	return &lookupBundle{mailBundle: &mailBundle{bundle: b, smtp: srv}, logs: logs}
}

// buyAs pays for items with email as the buyer's address and customer as
// the Stripe customer, and waits until the order is fulfilled.
func (b *bundle) buyAs(t *testing.T, email, customer string, items ...stripefake.Item) httpapi.OrderJSON {
	t.Helper()
	s := b.paidSession(t, items...)
	s.CustomerEmail, s.Customer = email, customer
	b.Stripe.PutSession(s)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	return b.WaitOrder(t, s.ID, "fulfilled")
}

type apiAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (a apiAnswer) decode(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(a.body, v), string(a.body))
}

func (a apiAnswer) code(t *testing.T) string {
	t.Helper()
	var e map[string]any
	a.decode(t, &e)
	return fmt.Sprint(e["code"])
}

// call sends a request with an optional JSON body, as client (through
// X-Forwarded-For; "" for the loopback itself) with an optional bearer.
func (b *bundle) call(t *testing.T, method, path, body, client, bearer string) apiAnswer {
	t.Helper()
	header := http.Header{"Content-Type": {"application/json"}}
	if client != "" {
		header.Set("X-Forwarded-For", client)
	}
	if bearer != "" {
		header.Set("Authorization", "Bearer "+bearer)
	}
	status, h, out := send(t, method, b.URL+path, body, header)
	return apiAnswer{status, h, []byte(out)}
}

func (b *bundle) keyLookup(t *testing.T, email, client string) apiAnswer {
	t.Helper()
	body, err := json.Marshal(map[string]string{"email": email})
	require.NoError(t, err)
	return b.call(t, http.MethodPost, "/v1/key-lookup", string(body), client, "")
}

var clientSeq atomic.Int64

// myKeys opens a link's token, each time as another client, so the
// per-client limit stays out of the tests that are not about it.
func (b *bundle) myKeys(t *testing.T, token string) apiAnswer {
	t.Helper()
	n := clientSeq.Add(1)
	return b.myKeysAs(t, token, fmt.Sprintf("198.18.%d.%d", n/250%250, n%250+1))
}

func (b *bundle) myKeysAs(t *testing.T, token, client string) apiAnswer {
	t.Helper()
	body, err := json.Marshal(map[string]string{"token": token})
	require.NoError(t, err)
	return b.call(t, http.MethodPost, "/v1/my-keys", string(body), client, "")
}

// waitLookupJobs waits until n find-my-keys jobs exist and all of them
// have finished (completed or cancelled).
func (b *bundle) waitLookupJobs(t *testing.T, n int) {
	t.Helper()
	b.WaitJobsUntil(t, fmt.Sprintf("%d finished find-my-keys jobs", n), func() bool {
		var total, done int
		require.NoError(t, b.Pool.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE state IN ('completed', 'cancelled'))
			FROM river_job WHERE kind = 'send_key_lookup_email'`).Scan(&total, &done))
		return total == n && done == n
	})
}

// lookupMessages are the find-my-keys emails the SMTP server accepted (a
// purchase also sends its keys email).
func (b *mailBundle) lookupMessages(t *testing.T) []mailtest.Message {
	t.Helper()
	var out []mailtest.Message
	for _, m := range b.smtp.Messages() {
		if strings.Contains(string(m.Data), "\r\nSubject: "+mail.KeyLookupSubject+"\r\n") {
			out = append(out, m)
		}
	}
	return out
}

// waitLookupMessages waits until the SMTP server holds n find-my-keys
// emails, each sent by a job before it ends.
func (b *mailBundle) waitLookupMessages(t *testing.T, n int) []mailtest.Message {
	t.Helper()
	b.WaitJobsUntil(t, fmt.Sprintf("%d find-my-keys emails", n), func() bool { return len(b.lookupMessages(t)) >= n })
	return b.lookupMessages(t)
}

var linkPattern = regexp.MustCompile(regexp.QuoteMeta(publicBase) + `/my-keys#token=([A-Za-z0-9_-]+)`)

// linkToken is the token of the find-my-keys link in a message, read from
// both parts, which must agree.
func linkToken(t *testing.T, msg mailtest.Message) string {
	t.Helper()
	e := parseEmail(t, msg.Data)
	require.Equal(t, mail.KeyLookupSubject, e.header.Get("Subject"))
	text := linkPattern.FindStringSubmatch(e.text)
	require.NotNil(t, text, "the plain-text part holds the link: %s", e.text)
	html := linkPattern.FindStringSubmatch(e.html)
	require.NotNil(t, html, "the HTML part holds the link: %s", e.html)
	require.Equal(t, text[1], html[1])
	return text[1]
}

func TestKeyLookupEmailsALinkListingExactlyThatAddresssOrders(t *testing.T) {
	t.Parallel()
	b := setupLookup(t)
	first := b.buyAs(t, "Buyer.One@Example.com", fulfillertest.NewID("cus_"), stripefake.Item{PriceID: priceMonth, Quantity: 2})
	second := b.buyAs(t, "buyer.one@example.com", fulfillertest.NewID("cus_"), stripefake.Item{PriceID: priceLife, Quantity: 1})
	other := b.buyAs(t, "someone.else@example.com", fulfillertest.NewID("cus_"), stripefake.Item{PriceID: priceMonth, Quantity: 1})

	// Typed with other case and surrounding spaces.
	a := b.keyLookup(t, "  BUYER.ONE@example.COM ", "")
	require.Equal(t, http.StatusAccepted, a.status, string(a.body))
	require.JSONEq(t, `{"status":"accepted"}`, string(a.body))
	require.Equal(t, "no-store", a.header.Get("Cache-Control"))

	msgs := b.waitLookupMessages(t, 1)
	b.waitLookupJobs(t, 1)
	require.Len(t, b.lookupMessages(t), 1)
	require.Equal(t, []string{"buyer.one@example.com"}, msgs[0].To)
	token := linkToken(t, msgs[0])

	before := time.Now()
	got := b.myKeys(t, token)
	require.Equal(t, http.StatusOK, got.status, string(got.body))
	require.Equal(t, "no-store", got.header.Get("Cache-Control"))
	var listing httpapi.MyKeysJSON
	got.decode(t, &listing)
	require.Equal(t, "buyer.one@example.com", listing.Email)
	require.InDelta(t, before.Add(jobs.KeyLookupTokenTTL).Unix(), listing.ExpiresAt, 60)
	// Exactly this address's orders, newest first, as the order API shows
	// them to a signed link's holder: without their session IDs.
	require.Len(t, listing.Orders, 2)
	for i, want := range []httpapi.OrderJSON{second, first} {
		want.CheckoutSessionID = ""
		require.Equal(t, want, listing.Orders[i].OrderJSON)
	}
	for _, k := range other.Keys {
		require.NotContains(t, string(got.body), k.UserKey, "another buyer's key")
	}
	require.NotContains(t, string(got.body), other.CheckoutSessionID)

	// A link works as often as it is opened until it expires.
	require.Equal(t, http.StatusOK, b.myKeys(t, token).status)

	logs := b.logs.String()
	require.Contains(t, logs, "find-my-keys email sent")
	require.NotContains(t, logs, token, "the token never goes into a log")
	for _, o := range []httpapi.OrderJSON{first, second, other} {
		for _, k := range o.Keys {
			require.NotContains(t, logs, k.UserKey, "a full key never goes into a log")
		}
	}
}

func TestKeyLookupOfAnAddressWithoutOrdersIsAnsweredAlikeAndSendsNothing(t *testing.T) {
	t.Parallel()
	b := setupLookup(t)
	b.buyAs(t, "buyer@example.com", fulfillertest.NewID("cus_"), stripefake.Item{PriceID: priceMonth, Quantity: 1})

	known := b.keyLookup(t, "buyer@example.com", "")
	unknown := b.keyLookup(t, "nobody@example.com", "")
	require.Equal(t, http.StatusAccepted, unknown.status)
	require.Equal(t, known.status, unknown.status)
	require.Equal(t, string(known.body), string(unknown.body))

	// Both requests queued the same job; only the address with orders gets mail.
	b.waitLookupJobs(t, 2)
	msgs := b.lookupMessages(t)
	require.Len(t, msgs, 1)
	require.Equal(t, []string{"buyer@example.com"}, msgs[0].To)
	completed := &rivertest.RequireInsertedOpts{State: rivertype.JobStateCompleted}
	rivertest.RequireManyInserted(t.Context(), t, b.jobsDB(), []rivertest.ExpectedJob{
		{Args: jobs.SendKeyLookupEmailArgs{}, Opts: completed}, {Args: jobs.SendKeyLookupEmailArgs{}, Opts: completed},
	})
}

func TestKeyLookupRefusesMalformedRequests(t *testing.T) {
	t.Parallel()
	b := setupLookup(t)
	client := 0
	for name, body := range map[string]string{
		"not an address":  `{"email":"not-an-address"}`,
		"empty":           `{"email":"   "}`,
		"display name":    `{"email":"Buyer <buyer@example.com>"}`,
		"two addresses":   `{"email":"a@example.com, b@example.com"}`,
		"too long":        `{"email":"` + strings.Repeat("a", 250) + `@example.com"}`,
		"unknown field":   `{"email":"buyer@example.com","admin":true}`,
		"not JSON":        `email=buyer@example.com`,
		"two objects":     `{"email":"buyer@example.com"}{"email":"buyer@example.com"}`,
		"wrong type":      `{"email":42}`,
		"oversized body":  `{"email":"` + strings.Repeat("a", 5000) + `"}`,
		"control in name": "{\"email\":\"buy\\u0000er@example.com\"}",
	} {
		// Each case from its own client, so the per-client limit stays out of it.
		client++
		a := b.call(t, http.MethodPost, "/v1/key-lookup", body, fmt.Sprintf("198.51.100.%d", client), "")
		require.Equal(t, http.StatusBadRequest, a.status, "%s: %s", name, a.body)
		require.Equal(t, "invalid", a.code(t), name)
		require.Equal(t, "no-store", a.header.Get("Cache-Control"), name)
		require.Equal(t, "nosniff", a.header.Get("X-Content-Type-Options"), name)
	}
	rivertest.RequireNotInserted(t.Context(), t, b.jobsDB(), jobs.SendKeyLookupEmailArgs{}, nil)
	require.Equal(t, 0, b.Count(t, `SELECT count(*) FROM key_lookup_requests`))
}

func TestKeyLookupIsLimitedPerClient(t *testing.T) {
	t.Parallel()
	b := setupLookup(t)
	for i := range 5 {
		require.Equal(t, http.StatusAccepted, b.keyLookup(t, fmt.Sprintf("buyer%d@example.com", i), "203.0.113.7").status)
	}
	a := b.keyLookup(t, "buyer9@example.com", "203.0.113.7")
	require.Equal(t, http.StatusTooManyRequests, a.status)
	require.Equal(t, "rate_limited", a.code(t))
	require.Equal(t, "60", a.header.Get("Retry-After"))
	// Another client is not held back by the first.
	require.Equal(t, http.StatusAccepted, b.keyLookup(t, "buyer9@example.com", "203.0.113.8").status)
	b.waitLookupJobs(t, 6)
}

func TestKeyLookupSendsAtMostThreeLinksPerAddressAndClientAnHour(t *testing.T) {
	t.Parallel()
	b := setupLookup(t)
	b.buyAs(t, "buyer@example.com", fulfillertest.NewID("cus_"), stripefake.Item{PriceID: priceMonth, Quantity: 1})

	// Four requests at once from one client for an address with orders,
	// four from another for one without (each client keeps one of its five
	// requests in a row for later): every answer is the same 202.
	answers := make([]apiAnswer, 8)
	concurrently(8, func(i int) {
		email, client := "buyer@example.com", "192.0.2.1"
		if i%2 == 1 {
			email, client = "nobody@example.com", "192.0.2.2"
		}
		answers[i] = b.keyLookup(t, email, client)
	})
	for _, a := range answers {
		require.Equal(t, http.StatusAccepted, a.status, string(a.body))
		require.JSONEq(t, `{"status":"accepted"}`, string(a.body))
	}
	// Three jobs per address and client, whether the address has orders or not.
	b.waitLookupJobs(t, 2*jobs.KeyLookupsPerAddress)
	require.Len(t, b.lookupMessages(t), jobs.KeyLookupsPerAddress)
	for _, m := range b.lookupMessages(t) {
		require.Equal(t, []string{"buyer@example.com"}, m.To)
	}
	require.Equal(t, 2, b.Count(t, `SELECT count(*) FROM key_lookup_client_requests
		WHERE scope = 'address_client' AND cardinality(accepted_at) = $1`, jobs.KeyLookupsPerAddress))

	// An hour later the client may ask again (its requests made older).
	for _, table := range []string{"key_lookup_requests", "key_lookup_client_requests"} {
		_, err := b.Pool.Exec(context.Background(), `UPDATE `+table+` SET
			accepted_at = ARRAY(SELECT t - interval '61 minutes' FROM unnest(accepted_at) t),
			last_requested_at = last_requested_at - interval '61 minutes'`)
		require.NoError(t, err)
	}
	require.Equal(t, http.StatusAccepted, b.keyLookup(t, "buyer@example.com", "192.0.2.1").status)
	b.waitLookupMessages(t, jobs.KeyLookupsPerAddress+1)
	b.waitLookupJobs(t, 2*jobs.KeyLookupsPerAddress+1)
	// That job deleted the other address's and client's stale records.
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM key_lookup_requests`))
	require.Equal(t, 2, b.Count(t, `SELECT count(*) FROM key_lookup_client_requests`), "the buyer's client and its network")
}

// keyLookupFrom asks for a link from source, a loopback address the request
// really comes from (not a forwarded one).
func (b *bundle) keyLookupFrom(t *testing.T, email, source string) apiAnswer {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	defer client.CloseIdleConnections()
	body, err := json.Marshal(map[string]string{"email": email})
	require.NoError(t, err)
	resp, err := client.Post(b.URL+"/v1/key-lookup", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return apiAnswer{resp.StatusCode, resp.Header, out}
}

func TestKeyLookupsOfStrangersElsewhereLeaveTheBuyerTheirOwn(t *testing.T) {
	t.Parallel()
	b := setupLookup(t)
	b.buyAs(t, "buyer@example.com", fulfillertest.NewID("cus_"), stripefake.Item{PriceID: priceMonth, Quantity: 1})

	// Three strangers, each from an address of their own, ask for the
	// buyer's address until their own allowance is spent, and once more.
	for _, stranger := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		for range jobs.KeyLookupsPerAddress + 1 {
			a := b.keyLookupFrom(t, "buyer@example.com", stranger)
			require.Equal(t, http.StatusAccepted, a.status, string(a.body))
			require.JSONEq(t, `{"status":"accepted"}`, string(a.body))
		}
	}
	b.waitLookupJobs(t, 3*jobs.KeyLookupsPerAddress)
	b.waitLookupMessages(t, 3*jobs.KeyLookupsPerAddress)

	// The buyer's own request, from elsewhere, still sends a link.
	require.Equal(t, http.StatusAccepted, b.keyLookupFrom(t, "buyer@example.com", "127.0.0.5").status)
	b.waitLookupJobs(t, 3*jobs.KeyLookupsPerAddress+1)
	msgs := b.waitLookupMessages(t, 3*jobs.KeyLookupsPerAddress+1)
	require.Len(t, msgs, 3*jobs.KeyLookupsPerAddress+1)
	require.Equal(t, []string{"buyer@example.com"}, msgs[len(msgs)-1].To)
	require.Equal(t, http.StatusOK, b.myKeys(t, linkToken(t, msgs[len(msgs)-1])).status)
}

func TestMyKeysRefusesBadTamperedAndExpiredTokens(t *testing.T) {
	t.Parallel()
	b := setupLookup(t)
	b.buyAs(t, "buyer@example.com", fulfillertest.NewID("cus_"), stripefake.Item{PriceID: priceMonth, Quantity: 1})
	ctx := context.Background()
	valid, err := jobs.NewKeyLookupToken(ctx, b.Pool, "buyer@example.com", time.Now().Add(jobs.KeyLookupTokenTTL))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, b.myKeys(t, valid).status)

	expired, err := jobs.NewKeyLookupToken(ctx, b.Pool, "buyer@example.com", time.Now().Add(-time.Second))
	require.NoError(t, err)
	tooLong, err := jobs.NewKeyLookupToken(ctx, b.Pool, "buyer@example.com", time.Now().Add(24*time.Hour))
	require.NoError(t, err)
	// Tampered: the MAC of the valid token over another address, and
	// one bit of the address changed.
	raw, err := base64.RawURLEncoding.DecodeString(valid)
	require.NoError(t, err)
	mac := raw[len(raw)-32:]
	other := base64.RawURLEncoding.EncodeToString(append(append(append([]byte(nil), raw[:8]...), "other@example.com"...), mac...))
	flippedRaw := append([]byte(nil), raw...)
	flippedRaw[9] ^= 1
	flipped := base64.RawURLEncoding.EncodeToString(flippedRaw)

	for name, token := range map[string]string{
		"expired":            expired,
		"valid far too long": tooLong,
		"other address":      other,
		"a bit flipped":      flipped,
		"truncated":          valid[:len(valid)-4],
		"extended":           valid + "AAAA",
		"empty":              "",
		"garbage":            "not a token at all!",
		"huge":               strings.Repeat("A", 3000),
	} {
		a := b.myKeys(t, token)
		require.Equal(t, http.StatusUnauthorized, a.status, "%s: %s", name, a.body)
		require.Equal(t, "unauthorized", a.code(t), name)
		require.Contains(t, string(a.body), "request a new link from the find-my-keys form", name)
		require.Equal(t, "no-store", a.header.Get("Cache-Control"), name)
	}
	a := b.myKeys(t, expired)
	require.Contains(t, string(a.body), "expired")

	bad := b.call(t, http.MethodPost, "/v1/my-keys", `{"token":"x","email":"buyer@example.com"}`, "", "")
	require.Equal(t, http.StatusBadRequest, bad.status)
	require.NotContains(t, b.logs.String(), valid)

	// One client opening links (good or bad) again and again is held back.
	for range 10 {
		require.NotEqual(t, http.StatusTooManyRequests, b.myKeysAs(t, "garbage", "203.0.113.50").status)
	}
	limited := b.myKeysAs(t, valid, "203.0.113.50")
	require.Equal(t, http.StatusTooManyRequests, limited.status)
	require.Equal(t, "rate_limited", limited.code(t))
	require.Equal(t, "1", limited.header.Get("Retry-After"))
}

func TestKeyLookupSigningKeyIsCreatedOnceWhoeverAsksFirst(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	tokens := make([]string, 8)
	concurrently(len(tokens), func(i int) {
		token, err := jobs.NewKeyLookupToken(ctx, b.Pool, "buyer@example.com", time.Now().Add(time.Minute))
		require.NoError(t, err)
		tokens[i] = token
	})
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM key_lookup_signing_key`))
	for _, token := range tokens {
		email, _, err := jobs.VerifyKeyLookupToken(ctx, b.Pool, token, time.Now())
		require.NoError(t, err)
		require.Equal(t, "buyer@example.com", email)
	}
}

func TestKeyLookupNeedsMail(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.keyLookup(t, "buyer@example.com", "")
	require.Equal(t, http.StatusServiceUnavailable, a.status)
	require.Equal(t, "mail_not_configured", a.code(t))
	require.Contains(t, string(a.body), "SMTP_URL")
	require.Equal(t, "no-store", a.header.Get("Cache-Control"))
	rivertest.RequireNotInserted(t.Context(), t, b.jobsDB(), jobs.SendKeyLookupEmailArgs{}, nil)
}

func TestShopListsTheKeysOfACustomerAndOfAnAddress(t *testing.T) {
	t.Parallel()
	b := setup(t)
	customer := fulfillertest.NewID("cus_")
	first := b.buyAs(t, "Buyer@Example.com", customer, stripefake.Item{PriceID: priceMonth, Quantity: 2})
	second := b.buyAs(t, "buyer@example.com", customer, stripefake.Item{PriceID: priceLife, Quantity: 1})
	other := b.buyAs(t, "other@example.com", fulfillertest.NewID("cus_"), stripefake.Item{PriceID: priceMonth, Quantity: 1})

	want := []httpapi.ListedKeyJSON{}
	for _, o := range []httpapi.OrderJSON{second, first} {
		for _, k := range o.Keys {
			want = append(want, httpapi.ListedKeyJSON{KeyJSON: k, CheckoutSessionID: o.CheckoutSessionID, OrderStatus: "fulfilled"})
		}
	}
	require.Len(t, want, 3)
	type listing struct{ method, path, body string }
	for _, l := range []listing{
		{http.MethodGet, "/v1/customers/" + customer + "/keys", ""},
		{http.MethodPost, "/v1/keys/search", `{"email":" BUYER@example.com "}`},
	} {
		a := b.call(t, l.method, l.path, l.body, "", shopToken)
		require.Equal(t, http.StatusOK, a.status, "%s: %s", l.path, a.body)
		require.Equal(t, "no-store", a.header.Get("Cache-Control"))
		var keys httpapi.KeyListingJSON
		a.decode(t, &keys)
		require.Equal(t, want, keys.Keys, l.path)
		require.NotContains(t, string(a.body), other.Keys[0].UserKey)

		for name, bearer := range map[string]string{"no token": "", "wrong token": "shop-tokeN"} {
			a := b.call(t, l.method, l.path, l.body, "", bearer)
			require.Equal(t, http.StatusUnauthorized, a.status, name)
			require.Equal(t, "unauthorized", a.code(t), name)
			require.Equal(t, "no-store", a.header.Get("Cache-Control"))
		}
	}

	for _, l := range []listing{
		{http.MethodGet, "/v1/customers/cus_Unknown123/keys", ""},
		{http.MethodPost, "/v1/keys/search", `{"email":"nobody@example.com"}`},
	} {
		a := b.call(t, l.method, l.path, l.body, "", shopToken)
		require.Equal(t, http.StatusOK, a.status, l.path)
		require.JSONEq(t, `{"keys":[]}`, string(a.body), l.path)
	}
	for _, l := range []listing{
		{http.MethodGet, "/v1/customers/cus_/keys", ""},
		{http.MethodGet, "/v1/customers/cus_abc%21/keys", ""},
		{http.MethodGet, "/v1/customers/acct_123/keys", ""},
		{http.MethodGet, "/v1/customers/cus_" + strings.Repeat("a", 251) + "/keys", ""},
		{http.MethodPost, "/v1/keys/search", ""},
		{http.MethodPost, "/v1/keys/search", `{"email":""}`},
		{http.MethodPost, "/v1/keys/search", `{"email":"not-an-address"}`},
		{http.MethodPost, "/v1/keys/search", `{"email":"a@example.com, b@example.com"}`},
		{http.MethodPost, "/v1/keys/search", `{"email":"a@example.com","customer":"cus_123"}`},
		{http.MethodPost, "/v1/keys/search", `{"email":"a@example.com"}{"email":"b@example.com"}`},
		{http.MethodPost, "/v1/keys/search", `{"email":"` + strings.Repeat("a", 5000) + `@example.com"}`},
	} {
		a := b.call(t, l.method, l.path, l.body, "", shopToken)
		require.Equal(t, http.StatusBadRequest, a.status, "%s %s: %s", l.path, l.body, a.body)
		require.Equal(t, "invalid", a.code(t), l.path)
	}
}

// TestEmailAddressesInURLsAreRefusedNamingTheBodyRoute: access logs and
// proxies keep URLs, so the listings by address take it in a body; the
// query strings of earlier versions are refused, saying where to go, and
// answer nothing about the address.
func TestEmailAddressesInURLsAreRefusedNamingTheBodyRoute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.buyAs(t, "buyer@example.com", fulfillertest.NewID("cus_"), stripefake.Item{PriceID: priceMonth, Quantity: 1})
	for path, route := range map[string]string{
		"/v1/keys?email=buyer%40example.com":                      "POST /v1/keys/search",
		"/v1/keys":                                                "POST /v1/keys/search",
		"/v1/admin/orders?email=buyer%40example.com":              "POST /v1/admin/orders/search",
		"/v1/admin/orders?email=buyer%40example.com&discord=1234": "POST /v1/admin/orders/search",
	} {
		base, token := b.URL, shopToken
		if strings.HasPrefix(path, "/v1/admin/") {
			base, token = b.AdminURL, adminToken
		}
		status, _, body := send(t, http.MethodGet, base+path, "", bearer(token))
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", path, body)
		require.Contains(t, body, `"code":"invalid"`, path)
		require.Contains(t, body, route, path)
		require.NotContains(t, body, o.Keys[0].UserKey, path)
		require.NotContains(t, body, o.CheckoutSessionID, path)
	}
	// The admin search by Discord ID keeps its query; by address, a body.
	status, _, body := send(t, http.MethodGet, b.AdminURL+"/v1/admin/orders?discord=123456789012345678", "", bearer(adminToken))
	require.Equal(t, http.StatusOK, status, body)
	status, _, body = send(t, http.MethodPost, b.AdminURL+"/v1/admin/orders/search", `{"email":"buyer@example.com"}`, bearer(adminToken))
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, o.CheckoutSessionID)
}

// TestPostsMustBeJSON: a foreign page can make its visitors' browsers post
// text/plain or form bodies without a CORS preflight; such posts are refused
// before anything is recorded.
func TestPostsMustBeJSON(t *testing.T) {
	t.Parallel()
	b := setupLookup(t)
	s, key := b.boughtKey(t)
	for i, contentType := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		for _, post := range []struct{ path, body string }{
			{"/v1/key-lookup", `{"email":"buyer@example.com"}`},
			{"/v1/my-keys", `{"token":"x"}`},
			{"/v1/orders/" + s.ID + "/reset-hwid", keyBody(key)},
		} {
			req, err := http.NewRequest(http.MethodPost, b.URL+post.path, strings.NewReader(post.body))
			require.NoError(t, err)
			if contentType != "" {
				req.Header.Set("Content-Type", contentType)
			}
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", 100+i))
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s as %q: %s", post.path, contentType, raw)
			require.Contains(t, string(raw), "Content-Type: application/json")
		}
	}
	require.Zero(t, b.Count(t, `SELECT count(*) FROM key_lookup_requests`))
	require.Zero(t, b.Count(t, `SELECT count(*) FROM hwid_resets`))
}

// TestKeyLookupHasAProcessWideCap: requests from ever new addresses (a
// client rotating through a large IPv6 block) are bounded together.
func TestKeyLookupHasAProcessWideCap(t *testing.T) {
	t.Parallel()
	b := setupLookup(t)
	start := time.Now()
	accepted, refused := 0, 0
	for i := range 60 {
		a := b.keyLookup(t, fmt.Sprintf("someone%d@example.com", i), fmt.Sprintf("2001:db8:%x::1", i))
		switch a.status {
		case http.StatusAccepted:
			accepted++
		case http.StatusTooManyRequests:
			refused++
			require.Equal(t, "rate_limited", a.code(t))
			require.Equal(t, "5", a.header.Get("Retry-After"))
		default:
			t.Fatalf("unexpected answer %d: %s", a.status, a.body)
		}
	}
	// A burst of 30, refilled at one a second while the test ran.
	require.GreaterOrEqual(t, accepted, 30)
	require.LessOrEqual(t, accepted, 30+int(time.Since(start).Seconds())+1)
	require.Positive(t, refused)
	require.Equal(t, accepted, b.Count(t, `SELECT count(*) FROM key_lookup_requests`), "refused requests record nothing")
}
