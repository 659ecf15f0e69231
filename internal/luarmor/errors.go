package luarmor

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"
)

// Code classifies a refusal from Luarmor so callers can branch without
// matching the human message, which Luarmor may reword at any time.
type Code string

const (
	CodeUnknown      Code = "unknown"        // a refusal the client cannot classify
	CodeInvalidInput Code = "invalid_input"  // 400 for malformed or unacceptable input
	CodeUnauthorized Code = "unauthorized"   // 403: wrong API key or server IP not whitelisted
	CodeNotFound     Code = "not_found"      // unknown key, user or project
	CodeDiscordInUse Code = "discord_in_use" // the Discord ID belongs to another key of the project
	// CodeDiscordUnknown is a refusal whose message names the Discord ID
	// but matches no spelling of a known class (in use, already linked,
	// invalid): the caller must not guess which, and should log the message.
	CodeDiscordUnknown  Code = "discord_unrecognised"
	CodeAlreadyLinked   Code = "already_linked"    // the key already has a Discord ID linked
	CodeIdentifierInUse Code = "identifier_in_use" // the HWID belongs to another key of the project
	CodeCooldown        Code = "cooldown"          // HWID reset refused: the key is on cooldown
	CodeResetDisabled   Code = "reset_disabled"    // HWID resets are disabled for the script
	CodeServer          Code = "server_error"      // 5xx from Luarmor or its edge
	CodeBadResponse     Code = "bad_response"      // a body that is not Luarmor's JSON
)

// Sentinels for errors.Is. An *Error matches the sentinel of its Code;
// ErrConflict matches every refusal caused by the state of the key rather
// than by the request itself.
var (
	ErrNotFound        = errors.New("luarmor: not found")
	ErrUnauthorized    = errors.New("luarmor: unauthorized")
	ErrDiscordInUse    = errors.New("luarmor: discord id already in use")
	ErrAlreadyLinked   = errors.New("luarmor: key already has a discord id linked")
	ErrIdentifierInUse = errors.New("luarmor: identifier already in use")
	ErrCooldown        = errors.New("luarmor: key is on hwid reset cooldown")
	ErrResetDisabled   = errors.New("luarmor: hwid reset disabled for this script")
	ErrConflict        = errors.New("luarmor: refused by the key's current state")
	ErrInvalidInput    = errors.New("luarmor: invalid input")
	// ErrInvalidDiscordID matches the invalid-input refusal of a Discord
	// ID ("Invalid discord_id"): the one refusal a create survives by
	// leaving the ID out, so it is told apart by the message it names.
	ErrInvalidDiscordID = errors.New("luarmor: invalid discord id")
	// ErrDiscordUnrecognised matches a refusal that names the Discord ID
	// in words the client does not know (CodeDiscordUnknown). It is never
	// ErrInvalidDiscordID nor ErrDiscordInUse: Luarmor has more than one
	// spelling per refusal, and a new one must be looked at, not guessed.
	ErrDiscordUnrecognised = errors.New("luarmor: discord id refused with an unrecognised message")
	ErrServer              = errors.New("luarmor: server error")
	// ErrProjectRefused matches a refusal whose message names the project
	// ("Project not found!"): the project ID the request was sent to is
	// unknown or wrong, so the same request to another project may pass.
	// Like ErrInvalidDiscordID it is told apart by the message, since the
	// status is shared with refusals of keys and users.
	ErrProjectRefused = errors.New("luarmor: project refused")

	// ErrOutcomeUnknown matches failures after which a write may or may not
	// have been applied: the request was sent, then the connection was lost,
	// the deadline passed, Luarmor answered 5xx or the answer was unreadable.
	// Look the result up before repeating a non-idempotent call.
	ErrOutcomeUnknown = errors.New("luarmor: outcome unknown")
	// ErrNotSent matches failures that happened before the request left this
	// process (DNS, connection refused, TLS): nothing was applied.
	ErrNotSent = errors.New("luarmor: request not sent")
)

// Error is a refusal or failure answered by Luarmor (or the edge in front of
// it). It never holds the API key: Endpoint is the route template.
type Error struct {
	StatusCode int    // HTTP status
	Code       Code   // classification of the refusal
	Message    string // Luarmor's message, or a description of an unreadable body
	Endpoint   string // e.g. "POST /v3/projects/{project_id}/users"
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Code == CodeUnauthorized {
		msg += " (check LUARMOR_API_KEY and whitelist this server's public IP in the Luarmor dashboard)"
	}
	return fmt.Sprintf("luarmor: %s: HTTP %d %s: %s", e.Endpoint, e.StatusCode, e.Code, msg)
}

// Is lets errors.Is match an *Error against the package's sentinels.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == CodeNotFound
	case ErrUnauthorized:
		return e.Code == CodeUnauthorized
	case ErrDiscordInUse:
		return e.Code == CodeDiscordInUse
	case ErrAlreadyLinked:
		return e.Code == CodeAlreadyLinked
	case ErrIdentifierInUse:
		return e.Code == CodeIdentifierInUse
	case ErrCooldown:
		return e.Code == CodeCooldown
	case ErrResetDisabled:
		return e.Code == CodeResetDisabled
	case ErrConflict:
		switch e.Code {
		case CodeDiscordInUse, CodeAlreadyLinked, CodeIdentifierInUse, CodeCooldown, CodeResetDisabled:
			return true
		}
	case ErrInvalidInput:
		return e.Code == CodeInvalidInput
	case ErrInvalidDiscordID:
		return e.Code == CodeInvalidInput && matchesAny(normalizeMessage(e.Message), invalidDiscordMessages)
	case ErrDiscordUnrecognised:
		return e.Code == CodeDiscordUnknown
	case ErrProjectRefused:
		return (e.Code == CodeNotFound || e.Code == CodeInvalidInput) && strings.Contains(strings.ToLower(e.Message), "project")
	case ErrServer:
		return e.Code == CodeServer
	case ErrOutcomeUnknown:
		// A 5xx or an unreadable 2xx may come after the change was made.
		return e.Code == CodeServer || (e.Code == CodeBadResponse && e.StatusCode < 400)
	}
	return false
}

// RateLimitError is a 429: the API key's budget (about 60 requests per
// sliding minute, shared by every process using the key) is spent. The
// request was not applied. Luarmor sends no Retry-After: assume the whole
// window must pass.
type RateLimitError struct {
	Endpoint string
	Message  string
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("luarmor: %s: HTTP 429 rate limited: %s", e.Endpoint, e.Message)
}

// TransportError is a failure to exchange the request and its answer.
// Sent tells whether the request had been written in full before the
// failure: if so the outcome is unknown, otherwise nothing was applied.
type TransportError struct {
	Endpoint string
	Sent     bool
	Err      error // the cause, with any URL (and so the API key) removed
}

func (e *TransportError) Error() string {
	state := "not sent"
	if e.Sent {
		state = "sent, outcome unknown"
	}
	return fmt.Sprintf("luarmor: %s: request %s: %v", e.Endpoint, state, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// Is matches ErrOutcomeUnknown or ErrNotSent.
func (e *TransportError) Is(target error) bool {
	switch target {
	case ErrOutcomeUnknown:
		return e.Sent
	case ErrNotSent:
		return !e.Sent
	}
	return false
}

// IsRetryable reports whether the same call may succeed later without any
// change to the request: rate limits, server errors, unreadable answers and
// transport failures. Callers must still respect ErrOutcomeUnknown before
// repeating a create.
func IsRetryable(err error) bool {
	var rl *RateLimitError
	if errors.As(err, &rl) {
		return true
	}
	var te *TransportError
	if errors.As(err, &te) {
		return true
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code == CodeServer || e.Code == CodeBadResponse
	}
	return false
}

// Spellings of the refusals told apart by their message, normalised by
// normalizeMessage. Luarmor words one refusal several ways; these are every
// spelling the public clients list:
//   - luarmor-rs src/models/response.rs (LuarmorMessage::from_str):
//     "Discord ID already exists", "Discord ID already exists.",
//     "Discord ID already exist.", "Invalid discord_id";
//   - luarmor-ts src/interfaces/IKeyCreate.ts: the create answers
//     "Discord ID already exist.".
var (
	discordInUseMessages   = []string{"discord id already exists", "discord id already exist"}
	invalidDiscordMessages = []string{"invalid discord_id", "invalid discord id"}
)

// normalizeMessage lowercases a message, collapses its white space and
// trims punctuation and spaces from both ends, so "Discord ID already
// exist." and "discord id already exist" compare equal.
func normalizeMessage(m string) string {
	m = strings.Join(strings.Fields(strings.ToLower(m)), " ")
	return strings.TrimFunc(m, func(r rune) bool { return unicode.IsPunct(r) || unicode.IsSpace(r) })
}

// matchesAny reports whether the normalised message is one of the
// spellings, or starts with one followed by more words.
func matchesAny(m string, spellings []string) bool {
	for _, s := range spellings {
		if m == s || strings.HasPrefix(m, s+" ") {
			return true
		}
	}
	return false
}

// classify maps a Luarmor refusal to a Code. The status decides first; the
// message is only read to tell refusals that share a status apart, which the
// reference warns is a last resort.
func classify(status int, message string) Code {
	m := normalizeMessage(message)
	switch {
	case status >= 500:
		return CodeServer
	case status == http.StatusForbidden || strings.Contains(m, "api key"):
		return CodeUnauthorized
	case status == http.StatusNotFound,
		strings.Contains(m, "not found"),
		strings.Contains(m, "doesn't exist"),
		strings.Contains(m, "does not exist"):
		return CodeNotFound
	case matchesAny(m, discordInUseMessages):
		return CodeDiscordInUse
	case strings.Contains(m, "already has a discord"):
		return CodeAlreadyLinked
	case matchesAny(m, invalidDiscordMessages):
		return CodeInvalidInput
	case strings.Contains(m, "discord"):
		// Names the Discord ID in words of no known class: never guessed.
		return CodeDiscordUnknown
	case strings.Contains(m, "identifier already exists"):
		return CodeIdentifierInUse
	case strings.Contains(m, "cooldown"):
		return CodeCooldown
	case strings.Contains(m, "disabled"):
		return CodeResetDisabled
	case status == http.StatusBadRequest || strings.Contains(m, "invalid"):
		return CodeInvalidInput
	}
	return CodeUnknown
}
