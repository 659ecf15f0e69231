// Package discord verifies which Discord account a buyer holds: Discord's
// OAuth2 authorization-code flow with PKCE (S256) and the identify scope,
// through golang.org/x/oauth2, then GET /users/@me with the access token.
// The token is used once and never kept, logged or put in a URL; so are
// the code and the client secret. internal/discord/discordfake is the
// stand-in tests and `make run` sign in against.
package discord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/oauth2"
)

// Settings are DISCORD_CLIENT_ID, DISCORD_CLIENT_SECRET,
// DISCORD_REDIRECT_URL and DISCORD_BASE_URL. The zero value is off.
type Settings struct {
	ClientID     string
	ClientSecret string
	// RedirectURL is this service's callback (CallbackPath) as Discord's
	// application settings list it, exactly.
	RedirectURL string
	// BaseURL is Discord's (DefaultBaseURL) or a stand-in's: the
	// authorize page, the token endpoint and the API hang off it.
	BaseURL string
	// Timeout bounds each request to Discord; 0 is RequestTimeout. Not a
	// setting: tests shorten it.
	Timeout time.Duration
}

// Enabled reports whether the Discord link is on.
func (s Settings) Enabled() bool { return s.ClientID != "" }

// DefaultBaseURL is Discord's own.
const DefaultBaseURL = "https://discord.com"

// CallbackPath is the path of the service's callback route, which
// DISCORD_REDIRECT_URL must name.
const CallbackPath = "/discord/callback"

// Endpoints under the base URL, as Discord documents them.
const (
	AuthorizePath = "/oauth2/authorize"
	ExchangePath  = "/api/oauth2/token" // the token endpoint, where a code is exchanged
	UserPath      = "/api/v10/users/@me"
)

// Scope is the only scope asked for: the account's ID and username.
const Scope = "identify"

// RequestTimeout bounds each request to Discord by default, so a buyer
// waiting on the callback gets an answer.
const RequestTimeout = 10 * time.Second

// maxAnswer bounds what is read of an answer.
const maxAnswer = 64 << 10

// IDPattern accepts Discord snowflakes: 17 to 20 digits.
var IDPattern = regexp.MustCompile(`^[1-9][0-9]{16,19}$`)

// Errors of Identify. None holds the code, the token or the secret.
var (
	// ErrCodeRefused: Discord refused the code (invalid_grant): used
	// already, expired, or issued for another sign-in (another PKCE
	// verifier or redirect URL). The buyer starts again.
	ErrCodeRefused = errors.New("discord refused the sign-in code")
	// ErrClientRefused: Discord refused the service's own credentials
	// (DISCORD_CLIENT_ID, DISCORD_CLIENT_SECRET): an operator must fix them.
	ErrClientRefused = errors.New("discord refused this service's client credentials")
	// ErrUnavailable: Discord did not answer in time, or answered a
	// server error or a rate limit. Nothing changed; the buyer tries again.
	ErrUnavailable = errors.New("discord did not answer")
	// ErrBadAnswer: Discord answered something that is not an account.
	ErrBadAnswer = errors.New("discord answered something unreadable")
)

// User is the verified account.
type User struct {
	ID       string
	Username string
	// GlobalName is the display name, "" when unset.
	GlobalName string
}

// Client runs the flow for one Discord application.
type Client struct {
	oauth   oauth2.Config
	userURL string
	http    *http.Client
	timeout time.Duration
}

// NewClient returns the client of settings s; httpClient nil is a
// default one.
func NewClient(s Settings, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 3 * RequestTimeout}
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = RequestTimeout
	}
	base := strings.TrimRight(s.BaseURL, "/")
	return &Client{
		oauth: oauth2.Config{
			ClientID:     s.ClientID,
			ClientSecret: s.ClientSecret,
			RedirectURL:  s.RedirectURL,
			Scopes:       []string{Scope},
			Endpoint: oauth2.Endpoint{
				AuthURL:  base + AuthorizePath,
				TokenURL: base + ExchangePath,
				// Discord takes the client's credentials either way
				// (client_secret_basic or _post); the header keeps the
				// secret out of any body a proxy might log.
				AuthStyle: oauth2.AuthStyleInHeader,
			},
		},
		userURL: base + UserPath,
		http:    httpClient,
		timeout: timeout,
	}
}

// AuthCodeURL is Discord's authorize page for a sign-in with state and
// the S256 challenge of verifier.
func (c *Client) AuthCodeURL(state, verifier string) string {
	return c.oauth.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))
}

// Identify exchanges code, with the sign-in's PKCE verifier, for an
// access token and reads the account it belongs to. The token is dropped.
func (c *Client) Identify(ctx context.Context, code, verifier string) (User, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, c.http)
	exchangeCtx, cancel := context.WithTimeout(ctx, c.timeout)
	token, err := c.oauth.Exchange(exchangeCtx, code, oauth2.VerifierOption(verifier))
	cancel()
	if err != nil {
		return User{}, classifyExchange(err)
	}
	if !strings.EqualFold(token.TokenType, "bearer") || token.AccessToken == "" {
		return User{}, fmt.Errorf("%w: the token endpoint answered no bearer token", ErrBadAnswer)
	}
	return c.user(ctx, token.AccessToken)
}

// classifyExchange names a failed exchange by its cause, in words that
// hold nothing secret (a RetrieveError's text may hold the answer's body).
func classifyExchange(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		switch {
		case re.ErrorCode == "invalid_grant":
			return fmt.Errorf("%w (invalid_grant)", ErrCodeRefused)
		case re.ErrorCode == "invalid_client" || re.ErrorCode == "unauthorized_client" || status == http.StatusUnauthorized:
			return fmt.Errorf("%w (%s, HTTP %d): check DISCORD_CLIENT_ID and DISCORD_CLIENT_SECRET", ErrClientRefused, codeOr(re.ErrorCode), status)
		case status == http.StatusTooManyRequests || status >= 500:
			return fmt.Errorf("%w: the token endpoint answered HTTP %d", ErrUnavailable, status)
		}
		return fmt.Errorf("%w: the token endpoint refused the exchange (%s, HTTP %d)", ErrCodeRefused, codeOr(re.ErrorCode), status)
	}
	if transient(err) {
		return fmt.Errorf("%w: the token endpoint: %s", ErrUnavailable, transportCause(err))
	}
	return fmt.Errorf("%w: the token endpoint's answer: %s", ErrBadAnswer, transportCause(err))
}

func codeOr(code string) string {
	if code == "" {
		return "no error code"
	}
	return code
}

// transient reports a timeout, a cancellation or a failed connection.
func transient(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// transportCause says what failed without the request's URL (which holds
// nothing secret, but need not be repeated) or any answer's body.
func transportCause(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time"
	case errors.Is(err, context.Canceled):
		return "the request was cancelled"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "no answer in time"
	}
	return "the connection failed"
}

// user reads GET /users/@me with the access token.
func (c *Client) user(ctx context.Context, accessToken string) (User, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.userURL, nil)
	if err != nil {
		return User{}, fmt.Errorf("%w: building the user request: %w", ErrBadAnswer, err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return User{}, fmt.Errorf("%w: %s: %s", ErrUnavailable, UserPath, transportCause(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return User{}, fmt.Errorf("%w: %s: %s", ErrUnavailable, UserPath, transportCause(err))
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return User{}, fmt.Errorf("%w: %s answered HTTP %d", ErrUnavailable, UserPath, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return User{}, fmt.Errorf("%w: %s refused the new access token (HTTP %d)", ErrBadAnswer, UserPath, resp.StatusCode)
	}
	var u struct {
		ID         string  `json:"id"`
		Username   string  `json:"username"`
		GlobalName *string `json:"global_name"`
	}
	if err := json.Unmarshal(body, &u); err != nil {
		return User{}, fmt.Errorf("%w: %s answered no user object", ErrBadAnswer, UserPath)
	}
	if !IDPattern.MatchString(u.ID) {
		return User{}, fmt.Errorf("%w: %s answered an account ID that is not a snowflake", ErrBadAnswer, UserPath)
	}
	if !PlainName(u.Username) {
		return User{}, fmt.Errorf("%w: %s answered a username of no 1 to 32 printable characters", ErrBadAnswer, UserPath)
	}
	out := User{ID: u.ID, Username: u.Username}
	if u.GlobalName != nil && PlainName(*u.GlobalName) {
		out.GlobalName = *u.GlobalName
	}
	return out, nil
}

// PlainName reports whether s is a name fit to show: 1 to 32 characters
// (Discord's bounds), valid UTF-8, none of them a control or format
// character (which could reorder the page's text around it).
func PlainName(s string) bool {
	n := utf8.RuneCountInString(s)
	if n < 1 || n > 32 || !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.In(r, unicode.Cf) })
}
