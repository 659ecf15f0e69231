package discord_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"fulfiller/internal/discord"
	"fulfiller/internal/discord/discordfake"
)

// What Discord documents, and what the stand-in is held to. Sources
// (docs.discord.com, developers/topics/oauth2 and developers/resources/user;
// discord.com/.well-known/oauth-authorization-server):
//
//   - the authorize URL takes client_id, response_type=code, scope, state,
//     redirect_uri (and prompt); PKCE's code_challenge_methods_supported is
//     ["S256"];
//   - the token endpoint takes application/x-www-form-urlencoded only
//     ("JSON content is not permitted and will return an error"), with the
//     client's credentials as client_secret_basic or client_secret_post;
//   - the access token response is {access_token, token_type ("Bearer"),
//     expires_in (integer seconds), refresh_token, scope (space-delimited)};
//   - the user object is {id (snowflake string), username, discriminator,
//     global_name (string or null), avatar (string or null)} and optional
//     bot, system, mfa_enabled, banner, accent_color, locale, flags,
//     premium_type, public_flags, avatar_decoration_data; verified and
//     email only with the email scope;
//   - errors: RFC 6749's {error, error_description} from the OAuth2
//     endpoints, {message, code} from the API.
type field struct {
	kinds    []string // JSON kinds allowed: string, number, boolean, null, object
	required bool
}

var (
	tokenResponse = map[string]field{
		"access_token":  {[]string{"string"}, true},
		"token_type":    {[]string{"string"}, true},
		"expires_in":    {[]string{"number"}, true},
		"refresh_token": {[]string{"string"}, false},
		"scope":         {[]string{"string"}, true},
	}
	userObject = map[string]field{
		"id":                     {[]string{"string"}, true},
		"username":               {[]string{"string"}, true},
		"discriminator":          {[]string{"string"}, true},
		"global_name":            {[]string{"string", "null"}, true},
		"avatar":                 {[]string{"string", "null"}, true},
		"bot":                    {[]string{"boolean"}, false},
		"system":                 {[]string{"boolean"}, false},
		"mfa_enabled":            {[]string{"boolean"}, false},
		"banner":                 {[]string{"string", "null"}, false},
		"accent_color":           {[]string{"number", "null"}, false},
		"locale":                 {[]string{"string"}, false},
		"flags":                  {[]string{"number"}, false},
		"premium_type":           {[]string{"number"}, false},
		"public_flags":           {[]string{"number"}, false},
		"avatar_decoration_data": {[]string{"object", "null"}, false},
	}
	oauthErrorObject = map[string]field{
		"error":             {[]string{"string"}, true},
		"error_description": {[]string{"string"}, false},
	}
	apiErrorObject = map[string]field{
		"message": {[]string{"string"}, true},
		"code":    {[]string{"number"}, true},
	}
)

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case map[string]any:
		return "object"
	}
	return "array"
}

// requireShape holds a JSON object to a documented shape: every required
// field, no undocumented one, each of a documented kind.
func requireShape(t *testing.T, what string, body []byte, shape map[string]field) map[string]any {
	t.Helper()
	var obj map[string]any
	require.NoError(t, json.Unmarshal(body, &obj), "%s is a JSON object: %s", what, body)
	for name, f := range shape {
		v, ok := obj[name]
		if !ok {
			require.False(t, f.required, "%s has %s", what, name)
			continue
		}
		require.Contains(t, f.kinds, kindOf(v), "%s's %s is %v", what, name, f.kinds)
	}
	for name := range obj {
		_, documented := shape[name]
		require.True(t, documented, "%s has %s, which Discord does not document for it", what, name)
	}
	return obj
}

const (
	clientID     = "998877665544332211"
	clientSecret = "discord-client-secret-for-tests-0123"
	redirect     = "http://127.0.0.1:1/discord/callback"
)

func startFake(t *testing.T) (*discordfake.Fake, string) {
	t.Helper()
	f := discordfake.New(discordfake.Options{ClientID: clientID, ClientSecret: clientSecret, RedirectURLs: []string{redirect}})
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// authorize opens an authorize URL as a browser would, without following
// the redirect, and returns where it sends the browser.
func authorize(t *testing.T, authURL string) *url.URL {
	t.Helper()
	resp, err := noRedirects.Get(authURL)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	loc, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	return loc
}

func post(t *testing.T, endpoint, contentType, body string, basic ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

func get(t *testing.T, endpoint, bearer string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, endpoint, nil)
	require.NoError(t, err)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

// TestStandInAnswersInTheShapesDiscordDocuments walks the flow by hand,
// byte by byte, and holds every answer to the documented shapes.
func TestStandInAnswersInTheShapesDiscordDocuments(t *testing.T) {
	t.Parallel()
	fake, base := startFake(t)
	fake.SetUser(discordfake.User{ID: "123456789012345678", Username: "buyer"})
	verifier := oauth2.GenerateVerifier()
	q := url.Values{"client_id": {clientID}, "response_type": {"code"}, "scope": {"identify"}, "state": {"s1"},
		"redirect_uri": {redirect}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
	loc := authorize(t, base+discord.AuthorizePath+"?"+q.Encode())
	require.Equal(t, "127.0.0.1:1", loc.Host, "back to the registered redirect URL")
	require.Equal(t, "s1", loc.Query().Get("state"), "the state comes back as sent")
	code := loc.Query().Get("code")
	require.NotEmpty(t, code)

	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}}
	status, body := post(t, base+discord.ExchangePath, "application/json", `{"grant_type":"authorization_code"}`, clientID, clientSecret)
	require.Equal(t, http.StatusBadRequest, status, "JSON is not permitted at the token endpoint")
	requireShape(t, "a refusal of JSON", body, oauthErrorObject)

	status, body = post(t, base+discord.ExchangePath, "application/x-www-form-urlencoded", form.Encode(), clientID, "wrong-secret")
	require.Equal(t, http.StatusUnauthorized, status)
	require.Equal(t, "invalid_client", requireShape(t, "a refused client", body, oauthErrorObject)["error"])

	// client_secret_post works as well as client_secret_basic.
	withSecret := url.Values{"client_id": {clientID}, "client_secret": {clientSecret}}
	for k, v := range form {
		withSecret[k] = v
	}
	status, body = post(t, base+discord.ExchangePath, "application/x-www-form-urlencoded", withSecret.Encode())
	require.Equal(t, http.StatusOK, status, "%s", body)
	token := requireShape(t, "the access token response", body, tokenResponse)
	require.Equal(t, "Bearer", token["token_type"])
	require.Equal(t, "identify", token["scope"])
	require.Equal(t, float64(604800), token["expires_in"], "a week, in whole seconds")

	status, body = post(t, base+discord.ExchangePath, "application/x-www-form-urlencoded", form.Encode(), clientID, clientSecret)
	require.Equal(t, http.StatusBadRequest, status, "a code is good once")
	require.Equal(t, "invalid_grant", requireShape(t, "a spent code", body, oauthErrorObject)["error"])

	status, body = get(t, base+discord.UserPath, token["access_token"].(string))
	require.Equal(t, http.StatusOK, status)
	user := requireShape(t, "the user object", body, userObject)
	require.Equal(t, "123456789012345678", user["id"])
	require.Equal(t, "buyer", user["username"])
	require.Nil(t, user["global_name"], "no display name set: null")
	require.NotContains(t, user, "email", "the identify scope shows no email")

	status, body = get(t, base+discord.UserPath, "not-a-token")
	require.Equal(t, http.StatusUnauthorized, status)
	requireShape(t, "an API refusal", body, apiErrorObject)
}

// TestStandInRefusesWhatDiscordRefuses: the requests Discord documents
// as errors are errors here too.
func TestStandInRefusesWhatDiscordRefuses(t *testing.T) {
	t.Parallel()
	_, base := startFake(t)
	valid := url.Values{"client_id": {clientID}, "response_type": {"code"}, "scope": {"identify"}, "redirect_uri": {redirect}}
	with := func(k, v string) string {
		q := url.Values{}
		for key, vs := range valid {
			q[key] = vs
		}
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
		return base + discord.AuthorizePath + "?" + q.Encode()
	}
	for name, u := range map[string]string{
		"an unknown client":        with("client_id", "111111111111111111"),
		"an unregistered redirect": with("redirect_uri", "https://evil.example/discord/callback"),
	} {
		resp, err := noRedirects.Get(u)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s: an error page, never a redirect", name)
	}
	for name, tc := range map[string]struct{ url, error string }{
		"no identify scope":        {with("scope", "email"), "invalid_scope"},
		"an implicit grant":        {with("response_type", "token"), "unsupported_response_type"},
		"a plain PKCE challenge":   {with("code_challenge_method", "plain") + "&code_challenge=" + strings.Repeat("a", 43), "invalid_request"},
		"a challenge of no method": {with("code_challenge", strings.Repeat("a", 43)), "invalid_request"},
	} {
		loc := authorize(t, tc.url)
		require.Equal(t, tc.error, loc.Query().Get("error"), name)
		require.Empty(t, loc.Query().Get("code"), name)
	}
}

func newClient(base string, timeout time.Duration) *discord.Client {
	return discord.NewClient(discord.Settings{ClientID: clientID, ClientSecret: clientSecret, RedirectURL: redirect,
		BaseURL: base, Timeout: timeout}, nil)
}

// signIn runs the browser's part: the client's authorize URL, and the
// code it comes back with.
func signIn(t *testing.T, c *discord.Client, state, verifier string) string {
	t.Helper()
	loc := authorize(t, c.AuthCodeURL(state, verifier))
	require.Equal(t, state, loc.Query().Get("state"))
	return loc.Query().Get("code")
}

// TestOAuth2WithPKCEWorksAgainstTheStandIn runs golang.org/x/oauth2, as
// the service does, against the stand-in: the documented authorize URL,
// the exchange with the verifier, the account; and each failure in its
// class.
func TestOAuth2WithPKCEWorksAgainstTheStandIn(t *testing.T) {
	t.Parallel()
	fake, base := startFake(t)
	fake.SetUser(discordfake.User{ID: "223456789012345678", Username: "verified_buyer", GlobalName: "Verified Buyer"})
	c := newClient(base, 500*time.Millisecond)
	ctx := context.Background()

	verifier := oauth2.GenerateVerifier()
	authURL, err := url.Parse(c.AuthCodeURL("the-state", verifier))
	require.NoError(t, err)
	var params []string
	for k := range authURL.Query() {
		params = append(params, k)
	}
	sort.Strings(params)
	require.Equal(t, []string{"client_id", "code_challenge", "code_challenge_method", "redirect_uri", "response_type", "scope", "state"}, params)
	require.Equal(t, "S256", authURL.Query().Get("code_challenge_method"))
	require.Equal(t, oauth2.S256ChallengeFromVerifier(verifier), authURL.Query().Get("code_challenge"))
	require.Equal(t, "identify", authURL.Query().Get("scope"))

	code := signIn(t, c, "the-state", verifier)
	u, err := c.Identify(ctx, code, verifier)
	require.NoError(t, err)
	require.Equal(t, discord.User{ID: "223456789012345678", Username: "verified_buyer", GlobalName: "Verified Buyer"}, u)
	_, err = c.Identify(ctx, code, verifier)
	require.ErrorIs(t, err, discord.ErrCodeRefused, "a code is good once")

	code = signIn(t, c, "s", verifier)
	_, err = c.Identify(ctx, code, oauth2.GenerateVerifier())
	require.ErrorIs(t, err, discord.ErrCodeRefused, "a code is good only with its sign-in's verifier")

	wrong := discord.NewClient(discord.Settings{ClientID: clientID, ClientSecret: "another-secret-0123456789", RedirectURL: redirect, BaseURL: base}, nil)
	code = signIn(t, c, "s", verifier)
	_, err = wrong.Identify(ctx, code, verifier)
	require.ErrorIs(t, err, discord.ErrClientRefused)
	require.NotContains(t, err.Error(), "another-secret", "the secret is never in an error")

	fake.Fail("token", 1, http.StatusBadGateway, 0)
	code = signIn(t, c, "s", verifier)
	_, err = c.Identify(ctx, code, verifier)
	require.ErrorIs(t, err, discord.ErrUnavailable, "a 502 of the token endpoint")
	require.NotContains(t, err.Error(), code, "the code is never in an error")

	fake.Fail("token", 1, 0, 2*time.Second)
	code = signIn(t, c, "s", verifier)
	started := time.Now()
	_, err = c.Identify(ctx, code, verifier)
	require.ErrorIs(t, err, discord.ErrUnavailable, "a token endpoint that does not answer in time")
	require.Less(t, time.Since(started), 1500*time.Millisecond, "given up after the timeout")

	fake.Fail("user", 1, http.StatusServiceUnavailable, 0)
	code = signIn(t, c, "s", verifier)
	_, err = c.Identify(ctx, code, verifier)
	require.ErrorIs(t, err, discord.ErrUnavailable, "a 503 of /users/@me")
}
