package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/discord"
	"fulfiller/internal/discord/discordfake"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/jobs"
	"fulfiller/internal/logging/logtest"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi/stripefake"
)

// Accounts the Discord stand-in signs in as.
var (
	buyerAccount    = discordfake.User{ID: "623456789012345678", Username: "buyer_one", GlobalName: "Buyer One"}
	strangerAccount = discordfake.User{ID: "723456789012345678", Username: "stranger"}
)

// discordBundle is a service with the verified Discord link on, pointed
// at a Discord stand-in, with its whole log in a buffer.
type discordBundle struct {
	*bundle
	discord *fulfillertest.Discord
	logs    *logtest.Buffer
	doc     routers.Router
}

func setupDiscord(t *testing.T) *discordBundle {
	t.Helper()
	d := fulfillertest.StartDiscord(t)
	logs := &logtest.Buffer{}
	b := setup(t, withLogger(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		withConfig(d.Configure))
	doc, err := openapi3.NewLoader().LoadFromData(httpapi.OpenAPIDocument())
	require.NoError(t, err)
	router, err := legacy.NewRouter(doc)
	require.NoError(t, err)
	return &discordBundle{bundle: b, discord: d, logs: logs, doc: router}
}

// discordBrowser is one buyer's browser: its own cookies, redirects followed by
// hand so each answer of the service can be held to the OpenAPI document.
type discordBrowser struct {
	b      *discordBundle
	client *http.Client
}

func (b *discordBundle) browser(t *testing.T) *discordBrowser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &discordBrowser{b: b, client: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// landing is an answer the browser ended on.
type landing struct {
	status int
	url    *url.URL
	body   string
	// visited are the addresses the browser went through, redirects
	// included.
	visited []string
}

// open goes to address (absolute, or a path of the service) and follows
// redirects as a browser does, to the service and to Discord.
func (br *discordBrowser) open(t *testing.T, address string) landing {
	t.Helper()
	if strings.HasPrefix(address, "/") {
		address = br.b.URL + address
	}
	var visited []string
	for range 10 {
		visited = append(visited, address)
		resp, err := br.client.Get(address)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		_ = resp.Body.Close()
		if strings.HasPrefix(address, br.b.URL) {
			br.b.requireDocumented(t, resp, body)
		}
		if resp.StatusCode < 300 || resp.StatusCode >= 400 {
			return landing{status: resp.StatusCode, url: resp.Request.URL, body: string(body), visited: visited}
		}
		next, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		require.NoError(t, err)
		next.Fragment = "" // never sent
		address = next.String()
	}
	t.Fatalf("more than 10 redirects from %s", visited[0])
	return landing{}
}

// requireDocumented holds an answer of the service to the OpenAPI
// document: its route, its status and its body.
func (b *discordBundle) requireDocumented(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	req := resp.Request.Clone(context.Background())
	req.URL.Scheme, req.URL.Host, req.Host = "", "", ""
	route, params, err := b.doc.FindRoute(req)
	require.NoError(t, err, "%s is a documented operation", req.URL.Path)
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	})
	require.NoError(t, err, "%s answered %d as documented", req.URL.Path, resp.StatusCode)
}

var linkDiscordButton = regexp.MustCompile(`href="(/orders/ol_[A-Za-z0-9_-]+/discord)"`)

// linkButton opens the order page as Stripe's success URL names it and
// returns its Link Discord button's address.
func (br *discordBrowser) linkButton(t *testing.T, sessionID string) string {
	t.Helper()
	p := br.open(t, "/orders/"+sessionID)
	require.Equal(t, http.StatusOK, p.status)
	m := linkDiscordButton.FindStringSubmatch(p.body)
	require.NotNil(t, m, "the order page offers Link Discord:\n%s", p.body)
	require.NotContains(t, m[1], sessionID, "the button carries a signed link, never the session ID")
	return m[1]
}

// linkedAs waits until the order shows its verified account linked.
func (b *discordBundle) linkedAs(t *testing.T, sessionID, username string) httpapi.OrderJSON {
	t.Helper()
	return b.WaitOrderFor(t, sessionID, username+" linked", func(o httpapi.OrderJSON) bool {
		return o.Discord != nil && o.Discord.Username == username && o.Discord.Status == "linked"
	})
}

func (b *discordBundle) discordOf(t *testing.T, projectID, key string) string {
	t.Helper()
	u, ok := b.Luarmor.User(projectID, key)
	require.True(t, ok, "Luarmor has the key")
	return u.DiscordID
}

func (b *discordBundle) linkCalls() int {
	return b.Luarmor.CallCount(http.MethodPost, "/users/linkdiscord")
}

func TestVerifiedDiscordAccountIsLinkedFromTheOrderPageToTheKeys(t *testing.T) {
	t.Parallel()
	b := setupDiscord(t)
	b.discord.SetUser(buyerAccount)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 2}, stripefake.Item{PriceID: priceOther, Quantity: 1})
	require.Len(t, o.Keys, 3)
	require.Nil(t, o.Discord)

	br := b.browser(t)
	p := br.open(t, br.linkButton(t, s.ID))
	require.Equal(t, http.StatusOK, p.status, p.body)
	require.True(t, strings.HasPrefix(p.url.Path, "/orders/ol_"), "back on the order page, by a signed link: %s", p.url)
	require.Empty(t, p.url.RawQuery, "the code and the state are gone from the address")
	require.Contains(t, p.body, "buyer_one")
	require.Contains(t, p.visited[1], b.discord.URL+discord.AuthorizePath, "the buyer went through Discord's authorize page")

	got := b.linkedAs(t, s.ID, "buyer_one")
	// Luarmor links an account to one key per project: the order's first
	// key in each.
	verified := map[string]string{}
	for _, k := range got.Keys {
		if k.DiscordVerified {
			verified[k.ProjectID] = k.UserKey
			require.Equal(t, buyerAccount.ID, b.discordOf(t, k.ProjectID, k.UserKey))
		} else {
			require.Empty(t, b.discordOf(t, k.ProjectID, k.UserKey))
		}
	}
	require.Equal(t, map[string]string{project: got.Keys[0].UserKey, project2: got.Keys[2].UserKey}, verified)
	require.Equal(t, 2, b.linkCalls(), "one linkdiscord per key")
	again := br.open(t, p.url.Path)
	require.Contains(t, again.body, "Discord linked: buyer_one")
	require.Contains(t, again.body, "Linked to your verified Discord account.")

	// The key's writer ran once per key; run it again and nothing is sent.
	watch := fulfillertest.WatchJobs(t, b.Main.River)
	var ledgerID int64
	require.NoError(t, b.Pool.QueryRow(context.Background(), `SELECT id FROM ledger_keys WHERE user_key = $1`, got.Keys[0].UserKey).Scan(&ledgerID))
	_, err := b.Main.River.Insert(context.Background(), jobs.SyncKeyArgs{LedgerKeyID: ledgerID}, nil)
	require.NoError(t, err)
	watch.WaitCompleted(t, "sync_key", 1)
	require.Equal(t, 2, b.linkCalls(), "a verification is applied once")

	// Nothing secret left the sign-in: not the codes, the tokens or the
	// client secret (in the log or a job), not the session ID (in a job).
	logs := b.logs.String()
	require.Contains(t, logs, "the buyer verified a Discord account for the order", "the log is captured")
	var args string
	require.NoError(t, b.Pool.QueryRow(context.Background(), `SELECT string_agg(args::text, ' ') FROM river_job`).Scan(&args))
	for _, secret := range append(b.discord.Issued(), fulfillertest.DiscordClientSecret) {
		require.NotContains(t, logs, secret)
		require.NotContains(t, args, secret)
	}
	require.NotContains(t, args, s.ID)
	require.NotContains(t, logs, s.ID)
}

// typedOrder pays for a key of project, with discordID typed at checkout
// by a customer of their own, and waits until it is delivered.
func (b *discordBundle) typedOrder(t *testing.T, discordID string) (stripefake.Session, httpapi.OrderJSON) {
	t.Helper()
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	s.DiscordID = discordID
	b.Stripe.PutSession(s)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	return s, b.WaitOrder(t, s.ID, "fulfilled")
}

// The Discord ID typed at checkout is a claim: a verified account
// replaces it on the order's key, takes the account from a key that holds
// it only because someone typed it, and is never taken by a later typed
// claim.
func TestTypedDiscordClaimNeverOverridesAVerifiedAccount(t *testing.T) {
	t.Parallel()
	b := setupDiscord(t)
	// A stranger typed the buyer's Discord ID at their own checkout, and
	// got a key linked to it.
	_, impostor := b.typedOrder(t, buyerAccount.ID)
	impostorKey := impostor.Keys[0].UserKey
	require.Equal(t, buyerAccount.ID, b.discordOf(t, project, impostorKey))
	// The buyer typed a wrong ID at theirs.
	s, o := b.typedOrder(t, strangerAccount.ID)
	buyerKey := o.Keys[0].UserKey
	require.Equal(t, strangerAccount.ID, b.discordOf(t, project, buyerKey))
	page := b.browser(t).open(t, "/orders/"+s.ID)
	require.Contains(t, page.body, "Discord ID typed at checkout (not verified", "the typed ID is labelled a claim")

	b.discord.SetUser(buyerAccount)
	br := b.browser(t)
	require.Equal(t, http.StatusOK, br.open(t, br.linkButton(t, s.ID)).status)
	got := b.linkedAs(t, s.ID, buyerAccount.Username)
	require.True(t, got.Keys[0].DiscordVerified)
	require.Equal(t, buyerAccount.ID, b.discordOf(t, project, buyerKey), "the verified account replaced the typed one on the buyer's key")
	require.Empty(t, b.discordOf(t, project, impostorKey), "and was taken from the key that held it by a typed claim")
	_, imp := b.GetOrder(t, impostor.CheckoutSessionID)
	require.Equal(t, "in_use", imp.Keys[0].DiscordLink)
	require.Equal(t, "fulfilled", imp.Status, "the impostor's key itself works on")

	// A later checkout typing the verified account gets a key of its own.
	_, later := b.typedOrder(t, buyerAccount.ID)
	require.Equal(t, "in_use", later.Keys[0].DiscordLink)
	require.Empty(t, b.discordOf(t, project, later.Keys[0].UserKey))
	require.Equal(t, buyerAccount.ID, b.discordOf(t, project, buyerKey), "the verified link stands")
}

// A verified account never takes a link made another way (support,
// the dashboard, Luarmor's bot): the order says so instead.
func TestVerifiedAccountHeldByAKeyThisServiceMayNotTakeItFromIsRefusedAsInUse(t *testing.T) {
	t.Parallel()
	b := setupDiscord(t)
	_, other := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	otherKey := other.Keys[0].UserKey
	_, err := b.Luarmor.SetUserState(project, otherKey, sandbox.UserState{DiscordID: ptrTo(buyerAccount.ID)})
	require.NoError(t, err, "linked in the dashboard")

	s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.discord.SetUser(buyerAccount)
	br := b.browser(t)
	require.Equal(t, http.StatusOK, br.open(t, br.linkButton(t, s.ID)).status)
	got := b.WaitOrderFor(t, s.ID, "the link refused", func(o httpapi.OrderJSON) bool {
		return o.Discord != nil && o.Discord.Status == "in_use"
	})
	require.False(t, got.Keys[0].DiscordVerified)
	require.Equal(t, buyerAccount.ID, b.discordOf(t, project, otherKey), "the dashboard's link stands")
	require.Contains(t, br.open(t, "/orders/"+s.ID).body, "Contact the shop to move it")
}

func ptrTo[T any](v T) *T { return &v }

// callback is where Discord sent a browser back: the service's callback
// URL with code and state.
func (br *discordBrowser) callback(t *testing.T, linkButton string) *url.URL {
	t.Helper()
	resp, err := br.client.Get(br.b.URL + linkButton)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	resp, err = br.client.Get(resp.Header.Get("Location"))
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode, "Discord's authorize page sends the browser back")
	back, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	require.Equal(t, discord.CallbackPath, back.Path)
	return back
}

func (b *discordBundle) verifications(t *testing.T) int {
	return b.Count(t, `SELECT count(*) FROM order_discord`)
}

func TestDiscordSignInRefusesForgedReplayedAndMismatchedStates(t *testing.T) {
	t.Parallel()
	b := setupDiscord(t)
	b.discord.SetUser(buyerAccount)
	sa, oa := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	sb, ob := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})

	// No sign-in in this browser.
	alice, mallory := b.browser(t), b.browser(t)
	back := alice.callback(t, alice.linkButton(t, sa.ID))
	p := mallory.open(t, back.String())
	require.Equal(t, http.StatusBadRequest, p.status)
	require.Contains(t, p.body, `data-outcome="expired"`, "a callback carried to another browser")

	// A forged state, with the sign-in's own cookie.
	forged := *back
	q := forged.Query()
	q.Set("state", base64.RawURLEncoding.EncodeToString(make([]byte, 32)))
	forged.RawQuery = q.Encode()
	p = alice.open(t, forged.String())
	require.Equal(t, http.StatusBadRequest, p.status)
	require.Contains(t, p.body, `data-outcome="mismatch"`)
	require.Contains(t, p.body, "Back to your order", "the page leads back to the order")

	// A code of order A with the state of order B's sign-in, in B's
	// browser: the state is B's, but Discord refuses A's code without
	// A's PKCE verifier.
	codeA := alice.callback(t, alice.linkButton(t, sa.ID)).Query().Get("code")
	bob := b.browser(t)
	backB := bob.callback(t, bob.linkButton(t, sb.ID))
	mixed := *backB
	q = mixed.Query()
	q.Set("code", codeA)
	mixed.RawQuery = q.Encode()
	p = bob.open(t, mixed.String())
	require.Equal(t, http.StatusBadRequest, p.status)
	require.Contains(t, p.body, `data-outcome="code_refused"`)
	// And order A's whole callback in B's browser, where a sign-in of B
	// is under way: the state is not its cookie's.
	backA := alice.callback(t, alice.linkButton(t, sa.ID))
	bob.callback(t, bob.linkButton(t, sb.ID))
	p = bob.open(t, backA.String())
	require.Equal(t, http.StatusBadRequest, p.status)
	require.Contains(t, p.body, `data-outcome="mismatch"`)
	require.Zero(t, b.verifications(t), "nothing was recorded for either order")

	// A good callback links once; replayed with the same cookie, it is
	// refused before Discord is asked.
	cookie := alice.cookie(t)
	p = alice.open(t, backA.String())
	require.Equal(t, http.StatusOK, p.status, p.body)
	require.Equal(t, 1, b.verifications(t))
	exchanges := b.discord.Calls("token")
	replay, err := http.NewRequest(http.MethodGet, backA.String(), nil)
	require.NoError(t, err)
	replay.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(replay)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	_ = resp.Body.Close()
	b.requireDocumented(t, resp, body)
	require.Equal(t, http.StatusConflict, resp.StatusCode)
	require.Contains(t, string(body), `data-outcome="replayed"`)
	require.Equal(t, exchanges, b.discord.Calls("token"), "a replay never reaches Discord")
	require.Equal(t, 1, b.verifications(t))

	b.linkedAs(t, sa.ID, buyerAccount.Username)
	_, after := b.GetOrder(t, sb.ID)
	require.Nil(t, after.Discord, "order B got nothing")
	require.Empty(t, b.discordOf(t, project, ob.Keys[0].UserKey))
	require.Equal(t, buyerAccount.ID, b.discordOf(t, project, oa.Keys[0].UserKey))
}

// cookie is the sign-in cookie the browser holds for the callback.
func (br *discordBrowser) cookie(t *testing.T) *http.Cookie {
	t.Helper()
	u, err := url.Parse(br.b.URL + discord.CallbackPath)
	require.NoError(t, err)
	for _, c := range br.client.Jar.Cookies(u) {
		if c.Name == discord.CookieName {
			return c
		}
	}
	t.Fatal("no sign-in cookie")
	return nil
}

func TestBuyerOfOneOrderCannotLinkAnotherOrdersKeys(t *testing.T) {
	t.Parallel()
	b := setupDiscord(t)
	b.discord.SetUser(strangerAccount)
	sa, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	sb, ob := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	mallory := b.browser(t)
	linkA := mallory.linkButton(t, sa.ID)

	// B's session ID is no credential of the Discord routes, and a link
	// of A renamed to B's order number fails its MAC.
	p := mallory.open(t, "/orders/"+sb.ID+"/discord")
	require.Equal(t, http.StatusNotFound, p.status)
	var numberB int64
	require.NoError(t, b.Pool.QueryRow(context.Background(), `SELECT id FROM orders WHERE checkout_session_id = $1`, sb.ID).Scan(&numberB))
	token := strings.TrimSuffix(strings.TrimPrefix(linkA, "/orders/ol_"), "/discord")
	raw, err := base64.RawURLEncoding.DecodeString(token)
	require.NoError(t, err)
	raw[7] = byte(numberB) // the order number's last byte
	p = mallory.open(t, "/orders/ol_"+base64.RawURLEncoding.EncodeToString(raw)+"/discord")
	require.Equal(t, http.StatusNotFound, p.status, "a link moved to another order")

	// A's sign-in cookie moved to B's order number is refused.
	back := mallory.callback(t, linkA)
	c := mallory.cookie(t)
	sealed, err := base64.RawURLEncoding.DecodeString(c.Value)
	require.NoError(t, err)
	sealed[8] = byte(numberB)
	moved := &http.Cookie{Name: c.Name, Value: base64.RawURLEncoding.EncodeToString(sealed)}
	req, err := http.NewRequest(http.MethodGet, back.String(), nil)
	require.NoError(t, err)
	req.AddCookie(moved)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, string(body), `data-outcome="expired"`)

	require.Zero(t, b.verifications(t))
	require.Empty(t, b.discordOf(t, project, ob.Keys[0].UserKey), "B's key is untouched")
	require.Zero(t, b.linkCalls())
}

// Discord's refusals and failures each end on a page that says what
// happened, and lose nothing: the buyer tries again and it works.
func TestDiscordFailuresGetAPageAndLoseNothing(t *testing.T) {
	t.Parallel()
	b := setupDiscord(t)
	b.discord.SetUser(buyerAccount)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	br := b.browser(t)
	for _, tc := range []struct {
		name    string
		fault   func()
		status  int
		outcome string
	}{
		{"the buyer cancels", func() { b.discord.Deny(1) }, http.StatusOK, "denied"},
		{"the token endpoint fails", func() { b.discord.Fail("token", 1, http.StatusInternalServerError, 0) }, http.StatusServiceUnavailable, "unavailable"},
		{"the token endpoint times out", func() { b.discord.Fail("token", 1, 0, 5*time.Second) }, http.StatusServiceUnavailable, "unavailable"},
		{"/users/@me fails", func() { b.discord.Fail("user", 1, http.StatusBadGateway, 0) }, http.StatusServiceUnavailable, "unavailable"},
	} {
		tc.fault()
		p := br.open(t, br.linkButton(t, s.ID))
		require.Equal(t, tc.status, p.status, "%s: %s", tc.name, p.body)
		require.Contains(t, p.body, `data-outcome="`+tc.outcome+`"`, tc.name)
		require.Contains(t, p.body, "Nothing was changed", tc.name)
		require.Regexp(t, `href="/orders/ol_[A-Za-z0-9_-]+/discord"`, p.body, "%s: the page offers to try again", tc.name)
		require.Zero(t, b.verifications(t), tc.name)
		require.Empty(t, b.discordOf(t, project, o.Keys[0].UserKey), tc.name)
	}
	require.Contains(t, b.logs.String(), "a Discord sign-in failed; nothing was linked")

	p := br.open(t, br.linkButton(t, s.ID))
	require.Equal(t, http.StatusOK, p.status)
	b.linkedAs(t, s.ID, buyerAccount.Username)
	require.Equal(t, buyerAccount.ID, b.discordOf(t, project, o.Keys[0].UserKey))
	require.Equal(t, "fulfilled", b.WaitOrder(t, s.ID, "fulfilled").Status)
}

// A Luarmor answer lost after the link was applied: the retry reads the
// key and sends nothing twice.
func TestLinkWhoseAnswerIsLostIsNotSentAgain(t *testing.T) {
	t.Parallel()
	b := setupDiscord(t)
	b.discord.SetUser(buyerAccount)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/linkdiscord", Kind: sandbox.FaultApplyThenDrop})
	br := b.browser(t)
	require.Equal(t, http.StatusOK, br.open(t, br.linkButton(t, s.ID)).status)
	b.linkedAs(t, s.ID, buyerAccount.Username)
	require.Equal(t, buyerAccount.ID, b.discordOf(t, project, o.Keys[0].UserKey))
	require.Equal(t, 1, b.linkCalls(), "the retry found the key linked")
}

func TestDiscordLinkIsOffWithoutItsSettings(t *testing.T) {
	t.Parallel()
	plain := setup(t)
	b := &discordBundle{bundle: plain}
	doc, err := openapi3.NewLoader().LoadFromData(httpapi.OpenAPIDocument())
	require.NoError(t, err)
	b.doc, err = legacy.NewRouter(doc)
	require.NoError(t, err)
	s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	br := b.browser(t)
	p := br.open(t, "/orders/"+s.ID)
	require.Equal(t, http.StatusOK, p.status)
	require.NotContains(t, p.body, "Link Discord")
	require.NotContains(t, p.body, `class="discord"`)
	// A valid signed link of the order: the route is off, not refusing it.
	links, err := jobs.LoadOrderLinks(context.Background(), b.Pool)
	require.NoError(t, err)
	o, err := postgres.GetOrder(context.Background(), b.Pool, s.ID)
	require.NoError(t, err)
	link := links.Sign(o, time.Now().Add(time.Hour))
	require.Equal(t, http.StatusOK, br.open(t, "/orders/"+link).status, "the link opens the order")
	for _, path := range []string{"/orders/" + link + "/discord", discord.CallbackPath + "?code=x&state=y"} {
		p := br.open(t, path)
		require.Equal(t, http.StatusNotFound, p.status, path)
		require.Contains(t, p.body, "Page not found", path)
	}
}

// A reissued key takes the verified account with it: the new key carries
// it, and the order says so.
func TestReissuedKeyCarriesTheVerifiedAccount(t *testing.T) {
	t.Parallel()
	b := setupDiscord(t)
	b.discord.SetUser(buyerAccount)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	old := o.Keys[0].UserKey
	br := b.browser(t)
	require.Equal(t, http.StatusOK, br.open(t, br.linkButton(t, s.ID)).status)
	b.linkedAs(t, s.ID, buyerAccount.Username)

	req, err := http.NewRequest(http.MethodPost, b.AdminURL+"/v1/admin/keys/reissue", strings.NewReader(`{"user_key":"`+old+`"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	got := b.WaitOrderFor(t, s.ID, "the new key carrying the account", func(o httpapi.OrderJSON) bool {
		return len(o.Keys) == 2 && o.Keys[1].DiscordVerified && o.Discord.Status == "linked"
	})
	require.Equal(t, buyerAccount.ID, b.discordOf(t, project, got.Keys[1].UserKey))
	require.Empty(t, b.discordOf(t, project, old), "the revoked key gave it up")
}

// Support rotating an order's access (a leaked link) stops a sign-in
// begun with the old access: nothing is linked, Discord is not asked.
func TestSignInBegunBeforeARotationLinksNothing(t *testing.T) {
	t.Parallel()
	b := setupDiscord(t)
	b.discord.SetUser(strangerAccount)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	br := b.browser(t)
	back := br.callback(t, br.linkButton(t, s.ID))

	req, err := http.NewRequest(http.MethodPost, b.AdminURL+"/v1/admin/orders/"+s.ID+"/rotate-link", strings.NewReader(`{"reason":"leaked"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	p := br.open(t, back.String())
	require.Equal(t, http.StatusNotFound, p.status)
	require.Contains(t, p.body, `data-outcome="order_gone"`)
	require.Zero(t, b.discord.Calls("token"), "Discord was not asked")
	require.Zero(t, b.verifications(t))
	require.Empty(t, b.discordOf(t, project, o.Keys[0].UserKey))
}

// Verifying again with another account replaces the order's account on
// its keys; the first is no longer linked there.
func TestVerifyingAgainReplacesTheAccount(t *testing.T) {
	t.Parallel()
	b := setupDiscord(t)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	br := b.browser(t)
	b.discord.SetUser(strangerAccount)
	require.Equal(t, http.StatusOK, br.open(t, br.linkButton(t, s.ID)).status)
	b.linkedAs(t, s.ID, strangerAccount.Username)

	b.discord.SetUser(buyerAccount)
	p := br.open(t, br.linkButton(t, s.ID))
	require.Equal(t, http.StatusOK, p.status)
	require.Contains(t, p.body, "Link another Discord account")
	b.linkedAs(t, s.ID, buyerAccount.Username)
	require.Equal(t, buyerAccount.ID, b.discordOf(t, project, o.Keys[0].UserKey))
	require.Equal(t, 1, b.verifications(t), "one account per order")
	require.Equal(t, 2, b.linkCalls())
}

// A page of another site cannot start a sign-in in a buyer's browser
// (which would link whatever account that browser signs in with to an
// order of the other site's choosing): the buyer is asked first.
func TestSignInBegunByAnotherSiteAsksTheBuyerFirst(t *testing.T) {
	t.Parallel()
	b := setupDiscord(t)
	s, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	br := b.browser(t)
	button := br.linkButton(t, s.ID)

	req, err := http.NewRequest(http.MethodGet, b.URL+button, nil)
	require.NoError(t, err)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := br.client.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	_ = resp.Body.Close()
	b.requireDocumented(t, resp, body)
	require.Equal(t, http.StatusOK, resp.StatusCode, "not a redirect to Discord")
	require.Contains(t, string(body), `data-outcome="confirm"`)
	require.Contains(t, string(body), `href="`+button+`"`, "the buyer continues from this page")
	require.Empty(t, resp.Header.Values("Set-Cookie"), "no sign-in begun")
	require.Zero(t, b.discord.Calls("authorize"))

	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err = br.client.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode, "from the shop's own page it goes to Discord")
}
