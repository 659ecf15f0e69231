package sandbox

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"fulfiller/internal/luarmor"
)

// secondsPerDay converts key_days into auth_expire offsets, as Luarmor does
// (now + key_days × 86400).
const secondsPerDay = 86400

// project is one Luarmor project: its own key database and scripts.
type project struct {
	users   []*user          // creation order: the order of listings and paging
	byKey   map[string]*user // user_key → user
	scripts []*script        // creation order
	// resetsDisabled: the seller turned HWID resets off for the project's
	// scripts; every reset is refused, with force too.
	resetsDisabled bool
}

// user is a stored key: the wire object plus what the sandbox needs to enforce
// rules with sub-second precision on a fake clock.
type user struct {
	luarmor.User
	lastResetAt time.Time // exact time of the last HWID reset; zero if never
}

// script is a script of a project as replaced through PUT .../scripts/{id}.
type script struct {
	id string
	ScriptUpload
}

// ScriptUpload is the latest upload of a script: its source and flags, and
// Version, the number of uploads so far.
type ScriptUpload struct {
	Version   int
	Source    string
	Silent    bool
	FFA       bool
	Heartbeat bool
	Lightning bool
}

// accountStats feeds GET /v3/keys/{api_key}/stats.
type accountStats struct {
	executions   int
	obfuscations int // script uploads, each of which costs one obfuscation
	monthly      map[string]*monthStats
}

// Plan figures reported by the stats endpoint. The sandbox does not enforce
// them: a fulfilment service never reaches them in tests.
const (
	planObfuscations = 1000
	planMaxUsers     = 100000
	planScripts      = 10
)

// monthStats counts one calendar month (UTC) of the account's activity.
type monthStats struct {
	Month      string
	Executions int
	Users      int
}

func (a *accountStats) month(now time.Time) *monthStats {
	key := now.UTC().Format("2006-01")
	m, ok := a.monthly[key]
	if !ok {
		m = &monthStats{Month: key}
		a.monthly[key] = m
	}
	return m
}

// projectLocked returns the project with the given ID. An unrestricted
// sandbox creates an unknown project on first use, which is how "any project
// ID is accepted" is implemented; a restricted one reports it missing.
func (s *Sandbox) projectLocked(id string) (*project, bool) {
	if p, ok := s.projects[id]; ok {
		return p, true
	}
	if s.restricted {
		return nil, false
	}
	return s.addProjectLocked(id), true
}

// addProjectLocked creates a project; the caller checked that it is new.
func (s *Sandbox) addProjectLocked(id string) *project {
	p := &project{byKey: make(map[string]*user)}
	s.projects[id] = p
	s.projectOrder = append(s.projectOrder, id)
	return p
}

// SetHWIDResetsEnabled turns HWID resets of a project on or off, as the
// seller does in the dashboard; off refuses every reset ("Reset Hwid is
// disabled for this script"), with force too. It reports false for a
// project a restricted sandbox does not know.
func (s *Sandbox) SetHWIDResetsEnabled(projectID string, enabled bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projectLocked(projectID)
	if ok {
		p.resetsDisabled = !enabled
	}
	return ok
}

// userLocked finds a key in a project.
func (p *project) userLocked(key string) (*user, bool) {
	u, ok := p.byKey[key]
	return u, ok
}

// add stores a new user at the end of the creation order.
func (p *project) add(u *user) {
	p.users = append(p.users, u)
	p.byKey[u.UserKey] = u
}

// remove deletes a user, keeping the creation order of the others.
func (p *project) remove(u *user) {
	delete(p.byKey, u.UserKey)
	if i := slices.Index(p.users, u); i >= 0 {
		p.users = slices.Delete(p.users, i, i+1)
	}
}

// owner returns the user, other than except, whose field equals value; field
// selects identifier or discord_id. Uniqueness of both is per project.
func (p *project) owner(value string, field func(*user) string, except *user) *user {
	if value == "" {
		return nil
	}
	for _, u := range p.users {
		if u != except && field(u) == value {
			return u
		}
	}
	return nil
}

func identifierOf(u *user) string { return u.Identifier }
func discordOf(u *user) string    { return u.DiscordID }

// liftExpiredBans unbans the keys whose temporary ban has run out. Luarmor
// lifts such bans by itself; the sandbox does it lazily, before every
// operation that reads or changes the project, which is indistinguishable to
// a client.
func (p *project) liftExpiredBans(now time.Time) {
	for _, u := range p.users {
		if u.Banned == 1 && u.BanExpire != luarmor.NeverExpires && u.BanExpire <= now.Unix() {
			u.unban()
		}
	}
}

// unban clears a ban and invalidates its unban token.
func (u *user) unban() {
	u.Banned = 0
	u.BanReason = ""
	u.BanExpire = 0
	u.UnbanToken = ""
}

// pendingDays reports whether the key_days timer has not started yet.
func (u *user) pendingDays() bool { return u.KeyDays > 0 }

// expired reports whether the key's time has run out at now. A pending key
// never is: its clock has not started.
func (u *user) expired(now time.Time) bool {
	return !u.pendingDays() && u.AuthExpire != luarmor.NeverExpires && u.AuthExpire <= now.Unix()
}

// ---- Random strings ----

const alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomString returns n characters drawn uniformly from [A-Za-z0-9] with
// crypto/rand: keys and unban tokens are bearer secrets.
func randomString(n int) string {
	// Rejection sampling keeps the distribution uniform: 248 is the largest
	// multiple of 62 that fits in a byte.
	const accept = 256 - 256%len(alphanumeric)
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/4+8)
	for len(out) < n {
		_, _ = rand.Read(buf) // never fails: crypto/rand aborts the program instead
		for _, b := range buf {
			if int(b) < accept && len(out) < n {
				out = append(out, alphanumeric[int(b)%len(alphanumeric)])
			}
		}
	}
	return string(out)
}

// keyLength is the length of generated keys and unban tokens.
const keyLength = 32

// newKeyLocked generates a key that is unused in the project.
func (p *project) newKeyLocked() string {
	for {
		k := randomString(keyLength)
		if _, taken := p.byKey[k]; !taken {
			return k
		}
	}
}

// validDiscordID reports whether id looks like a Discord snowflake: 17 to 20
// decimal digits.
func validDiscordID(id string) bool {
	if len(id) < 17 || len(id) > 20 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '0' || id[i] > '9' {
			return false
		}
	}
	return true
}

// ---- Inspection hooks ----

// Users returns a copy of the project's keys in creation order; nil for an
// unknown project.
func (s *Sandbox) Users(projectID string) []luarmor.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[projectID]
	if !ok {
		return nil
	}
	p.liftExpiredBans(s.now())
	out := make([]luarmor.User, len(p.users))
	for i, u := range p.users {
		out[i] = u.User
	}
	return out
}

// User returns a copy of one key.
func (s *Sandbox) User(projectID, userKey string) (luarmor.User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[projectID]
	if !ok {
		return luarmor.User{}, false
	}
	p.liftExpiredBans(s.now())
	u, ok := p.userLocked(userKey)
	if !ok {
		return luarmor.User{}, false
	}
	return u.User, true
}

// Script returns the latest upload of a script.
func (s *Sandbox) Script(projectID, scriptID string) (ScriptUpload, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[projectID]
	if !ok {
		return ScriptUpload{}, false
	}
	for _, sc := range p.scripts {
		if sc.id == scriptID {
			return sc.ScriptUpload, true
		}
	}
	return ScriptUpload{}, false
}

// ---- Execution hook ----

// Errors returned by Execute; match them with errors.Is.
var (
	ErrProjectNotFound = errors.New("luarmor sandbox: project not found")
	ErrKeyNotFound     = errors.New("luarmor sandbox: key not found")
	ErrInvalidHWID     = errors.New("luarmor sandbox: empty HWID")
	ErrBanned          = errors.New("luarmor sandbox: key is blacklisted")
	ErrExpired         = errors.New("luarmor sandbox: key has expired")
	ErrHWIDMismatch    = errors.New("luarmor sandbox: HWID mismatch")
)

// Execute simulates a user running the project's loader with script_key set
// to userKey on a machine whose HWID is hwid. Like Luarmor it refuses banned
// keys (until a temporary ban runs out), expired keys and a HWID other than
// the bound one; otherwise it binds the HWID if none is bound (status
// "active"), starts a pending key_days timer (auth_expire = now + key_days ×
// 86400, key_days back to 0) and counts the execution. A refused execution
// changes nothing. Execute is not an API request: it is neither logged nor
// budgeted.
func (s *Sandbox) Execute(projectID, userKey, hwid string) error {
	if strings.TrimSpace(hwid) == "" {
		return ErrInvalidHWID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[projectID]
	if !ok {
		if s.restricted {
			return fmt.Errorf("%w: %q", ErrProjectNotFound, projectID)
		}
		return fmt.Errorf("%w: %q in project %q", ErrKeyNotFound, userKey, projectID)
	}
	now := s.now()
	p.liftExpiredBans(now)
	u, ok := p.userLocked(userKey)
	if !ok {
		return fmt.Errorf("%w: %q in project %q", ErrKeyNotFound, userKey, projectID)
	}
	if u.Banned == 1 {
		return fmt.Errorf("%w: %s", ErrBanned, banDescription(u))
	}
	if u.expired(now) {
		return fmt.Errorf("%w: auth_expire %d is not after %d", ErrExpired, u.AuthExpire, now.Unix())
	}
	if u.Identifier != "" && u.Identifier != hwid {
		return fmt.Errorf("%w: key is bound to another machine; reset its HWID first", ErrHWIDMismatch)
	}

	if u.Identifier == "" {
		u.Identifier = hwid
		u.IdentifierType = "HWID"
		u.Status = luarmor.StatusActive
	}
	if u.pendingDays() {
		u.AuthExpire = now.Unix() + int64(u.KeyDays)*secondsPerDay
		u.KeyDays = 0
	}
	u.TotalExecutions++
	s.account.executions++
	s.account.month(now).Executions++
	return nil
}

func banDescription(u *user) string {
	reason := u.BanReason
	if reason == "" {
		reason = "no reason given"
	}
	if u.BanExpire == luarmor.NeverExpires {
		return reason + " (permanent)"
	}
	return fmt.Sprintf("%s (until %d)", reason, u.BanExpire)
}

// ---- Use and dashboard hook ----

// ErrInvalidState is returned by SetUserState for a change the key cannot
// take: an identifier or Discord ID held by another key of the project, or
// a start of a timer that is not pending.
var ErrInvalidState = errors.New("luarmor sandbox: invalid key state")

// UserState is a change made to a stored key outside the API: what a
// holder's use of the key or the seller's edits in the dashboard leave on
// it. Tests use it to put a key in a state the API cannot give it at the
// moment they need, such as a first execution hours ago. Nil fields are
// left as they are.
type UserState struct {
	// Identifier binds a HWID (status "active") without starting the
	// key_days timer, as the dashboard does; "" unbinds it (status "reset").
	Identifier *string `json:"identifier,omitempty"`
	// DiscordID links a Discord account; "" unlinks it.
	DiscordID *string `json:"discord_id,omitempty"`
	// StartedAt starts a pending key_days timer as a first execution at
	// that moment does: auth_expire = StartedAt + key_days × 86400, and
	// key_days 0. A key whose timer is not pending is refused.
	StartedAt *time.Time `json:"started_at,omitempty"`
	// Banned true blacklists the key for good with a new unban token and
	// BanReason, as the dashboard's blacklist does; false lifts a ban.
	Banned    *bool  `json:"banned,omitempty"`
	BanReason string `json:"ban_reason,omitempty"`
	// TotalExecutions sets the execution counter.
	TotalExecutions *int `json:"total_executions,omitempty"`
	// LastReset records a HWID reset at that moment: last_reset, and one
	// more total_resets.
	LastReset *time.Time `json:"last_reset,omitempty"`
}

// SetUserState applies st to a key and returns the key as it is then. Like
// Execute it is not an API request: it is neither logged nor budgeted. The
// change is applied whole or not at all.
func (s *Sandbox) SetUserState(projectID, userKey string, st UserState) (luarmor.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[projectID]
	if !ok {
		return luarmor.User{}, fmt.Errorf("%w: %q", ErrProjectNotFound, projectID)
	}
	p.liftExpiredBans(s.now())
	u, ok := p.userLocked(userKey)
	if !ok {
		return luarmor.User{}, fmt.Errorf("%w: %q in project %q", ErrKeyNotFound, userKey, projectID)
	}
	switch {
	case st.Identifier != nil && p.owner(*st.Identifier, identifierOf, u) != nil:
		return luarmor.User{}, fmt.Errorf("%w: identifier held by another key", ErrInvalidState)
	case st.DiscordID != nil && p.owner(*st.DiscordID, discordOf, u) != nil:
		return luarmor.User{}, fmt.Errorf("%w: Discord ID linked to another key", ErrInvalidState)
	case st.DiscordID != nil && *st.DiscordID != "" && !validDiscordID(*st.DiscordID):
		return luarmor.User{}, fmt.Errorf("%w: %s", ErrInvalidState, msgInvalidDiscordID)
	case st.StartedAt != nil && !u.pendingDays():
		return luarmor.User{}, fmt.Errorf("%w: the key has no pending key_days timer to start", ErrInvalidState)
	case st.TotalExecutions != nil && *st.TotalExecutions < 0:
		return luarmor.User{}, fmt.Errorf("%w: negative total_executions", ErrInvalidState)
	}
	if st.Identifier != nil {
		u.Identifier = *st.Identifier
		u.Status = statusFor(u.Identifier)
	}
	if st.DiscordID != nil {
		u.DiscordID = *st.DiscordID
	}
	if st.StartedAt != nil {
		u.AuthExpire = st.StartedAt.Unix() + int64(u.KeyDays)*secondsPerDay
		u.KeyDays = 0
	}
	if st.Banned != nil && *st.Banned {
		token := randomString(keyLength)
		for token == u.UnbanToken {
			token = randomString(keyLength)
		}
		u.Banned, u.BanReason, u.BanExpire, u.UnbanToken = 1, st.BanReason, luarmor.NeverExpires, token
	} else if st.Banned != nil {
		u.unban()
	}
	if st.TotalExecutions != nil {
		u.TotalExecutions = *st.TotalExecutions
	}
	if st.LastReset != nil {
		u.LastReset = st.LastReset.Unix()
		u.lastResetAt = *st.LastReset
		u.TotalResets++
	}
	return u.User, nil
}
