package luarmor

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
)

// User is one license key in a Luarmor project, as the users endpoints return
// it. Every field of the reference is present so that a caller can decide from
// a single look-up; zero values mean what Luarmor's own zero values mean.
type User struct {
	UserKey         string `json:"user_key"`
	Identifier      string `json:"identifier"`
	IdentifierType  string `json:"identifier_type"`
	DiscordID       string `json:"discord_id"`
	Note            string `json:"note"`
	Status          string `json:"status"`      // "active", "reset" or "banned"
	AuthExpire      int64  `json:"auth_expire"` // unix seconds; NeverExpires (-1) for never
	KeyDays         int    `json:"key_days"`    // days granted on first activation; 0 once started or unset
	Banned          int    `json:"banned"`      // 1 when blacklisted
	BanReason       string `json:"ban_reason"`
	BanExpire       int64  `json:"ban_expire"` // unix seconds; NeverExpires (-1) for permanent
	UnbanToken      string `json:"unban_token"`
	LastReset       int64  `json:"last_reset"`
	TotalResets     int    `json:"total_resets"`
	TotalExecutions int    `json:"total_executions"`
}

// NeverExpires is Luarmor's value for "no expiry" in auth_expire and ban_expire.
const NeverExpires int64 = -1

// User statuses.
const (
	StatusActive = "active"
	StatusReset  = "reset"
	StatusBanned = "banned"
)

// IsBanned reports whether the key is blacklisted.
func (u User) IsBanned() bool { return u.Banned == 1 }

// CreateUserRequest is the body of POST /v3/projects/{project_id}/users.
// Every field is optional; Luarmor generates the key itself.
type CreateUserRequest struct {
	Identifier string `json:"identifier,omitempty"`
	AuthExpire *int64 `json:"auth_expire,omitempty"`
	Note       string `json:"note,omitempty"`
	DiscordID  string `json:"discord_id,omitempty"`
	KeyDays    int    `json:"key_days,omitempty"`
}

// UpdateUserRequest is the body of PATCH /v3/projects/{project_id}/users.
// Nil fields are left unchanged by Luarmor.
type UpdateUserRequest struct {
	UserKey    string  `json:"user_key"`
	Identifier *string `json:"identifier,omitempty"`
	AuthExpire *int64  `json:"auth_expire,omitempty"`
	Note       *string `json:"note,omitempty"`
	DiscordID  *string `json:"discord_id,omitempty"`
}

// ListUsersOptions filters GET /v3/projects/{project_id}/users. Empty fields
// are not sent. From and Until are start and end indexes for paging; nil means
// the API default.
type ListUsersOptions struct {
	DiscordID  string
	UserKey    string
	Identifier string
	Search     string // substring of identifier, user_key, discord_id or note
	From       *int
	Until      *int
}

// ResetHWIDRequest is the body of POST /v3/projects/{project_id}/users/resethwid.
type ResetHWIDRequest struct {
	UserKey string `json:"user_key"`
	Force   bool   `json:"force,omitempty"` // ignore the project's cooldown
}

// LinkDiscordRequest is the body of POST /v3/projects/{project_id}/users/linkdiscord.
type LinkDiscordRequest struct {
	UserKey   string `json:"user_key"`
	DiscordID string `json:"discord_id"`
	Force     bool   `json:"force,omitempty"` // overwrite an existing link
}

// BlacklistRequest is the body of POST /v3/projects/{project_id}/users/blacklist.
type BlacklistRequest struct {
	UserKey   string `json:"user_key"`
	BanReason string `json:"ban_reason,omitempty"`
	BanExpire *int64 `json:"ban_expire,omitempty"` // nil or NeverExpires: permanent
}

// UpdateScriptRequest is the body of PUT /v3/projects/{project_id}/scripts/{script_id}.
type UpdateScriptRequest struct {
	Script    string `json:"script"`
	Silent    bool   `json:"silent,omitempty"`
	FFA       bool   `json:"ffa,omitempty"`
	Heartbeat bool   `json:"heartbeat,omitempty"`
	Lightning bool   `json:"lightning,omitempty"`
}

// Status is the answer of GET /status (no envelope).
type Status struct {
	Version        string `json:"version"`
	Active         bool   `json:"active"`
	Message        string `json:"message"`
	Warning        bool   `json:"warning"`
	WarningMessage string `json:"warning_message"`
}

// KeyDetails is the answer of GET /v3/keys/{api_key}/details.
type KeyDetails struct {
	Email        string    `json:"email"`
	DiscordID    string    `json:"discord_id"`
	ExpiresAt    int64     `json:"expires_at"`
	RegisteredAt int64     `json:"registered_at"`
	Enabled      int       `json:"enabled"`
	Plan         string    `json:"plan"` // luarmor-rs: "b" basic, "p" premium, "r" pro
	Projects     []Project `json:"projects"`
}

// Project is one project of the API key's account.
type Project struct {
	Platform string          `json:"platform"` // "roblox"
	ID       string          `json:"id"`
	Name     string          `json:"name"`
	Settings ProjectSettings `json:"settings"`
	Scripts  []Script        `json:"scripts"`
}

// ProjectSettings holds the project settings the details endpoint reports.
type ProjectSettings struct {
	ResetHWIDCooldown int64 `json:"reset_hwid_cooldown"` // seconds; luarmor-rs reads a negative value as never
}

// Script is one script of a project.
type Script struct {
	ScriptID      string `json:"script_id"`
	ScriptName    string `json:"script_name"`
	ScriptVersion string `json:"script_version"`
	FFA           bool   `json:"ffa"`
	Silent        bool   `json:"silent"`
}

// KeyStats is the answer of GET /v3/keys/{api_key}/stats, in the shape both
// public clients model (luarmor-rs src/models/v3/keys/stats.rs
// ApiKeyStatsResponse, luarmor-ts src/interfaces/IStats.ts):
//
//	{"execution_data": {"frequency", "executions": [...]},
//	 "stats": {"obfuscations", "scripts", "users", "attacks_blocked",
//	           "default": {"scripts", "users", "obfuscations"}, "reset_at"}}
//
// Decoding is lenient where the clients disagree or say nothing: numbers
// may be integers, floats or numeric strings; a field that is absent, null
// or not a number is left unknown (nil) rather than failing the answer; and
// the stats fields are also read from the top level, as luarmor-ts's
// keyStats() types the answer (src/interfaces/IKeyStats.ts).
type KeyStats struct {
	ExecutionData ExecutionData
	Stats         UsageStats
}

// ExecutionData is the execution graph: one count per point. Neither client
// says what frequency measures.
type ExecutionData struct {
	Frequency  *int64
	Executions []int64
}

// UsageStats is the account's usage. Users is absent with noUsers=true
// (luarmor-rs ScriptStatsNoUsers).
type UsageStats struct {
	Obfuscations   *int64 // obfuscations left this period (luarmor-rs: "remaining obfuscations")
	Scripts        *int64
	Users          *int64 // keys of the account
	AttacksBlocked *int64
	Default        PlanDefaults
	ResetAt        *int64 // unix seconds of the next usage reset
}

// PlanDefaults are the plan's allowances ("default" in the answer): the
// only place the clients show a user limit (luarmor-rs ScriptDefaultStats).
type PlanDefaults struct {
	Scripts      *int64
	Users        *int64
	Obfuscations *int64
}

// UserLimit returns the plan's user limit, and false when the answer does
// not tell it (absent, or not a positive number): a zero is never a limit.
func (s *KeyStats) UserLimit() (int64, bool) {
	if u := s.Stats.Default.Users; u != nil && *u > 0 {
		return *u, true
	}
	return 0, false
}

// UnmarshalJSON decodes the answer leniently (see KeyStats).
func (s *KeyStats) UnmarshalJSON(b []byte) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return err
	}
	*s = KeyStats{}
	if ed := objectOf(top["execution_data"]); ed != nil {
		s.ExecutionData.Frequency = lenientInt(ed["frequency"])
		var points []json.RawMessage
		if json.Unmarshal(ed["executions"], &points) == nil {
			for _, p := range points {
				if n := lenientInt(p); n != nil {
					s.ExecutionData.Executions = append(s.ExecutionData.Executions, *n)
				}
			}
		}
	}
	st := objectOf(top["stats"])
	if st == nil {
		st = top // luarmor-ts IKeyStats: the stats fields at the top level
	}
	s.Stats = UsageStats{
		Obfuscations:   lenientInt(st["obfuscations"]),
		Scripts:        lenientInt(st["scripts"]),
		Users:          lenientInt(st["users"]),
		AttacksBlocked: lenientInt(st["attacks_blocked"]),
		ResetAt:        lenientInt(st["reset_at"]),
	}
	if def := objectOf(st["default"]); def != nil {
		s.Stats.Default = PlanDefaults{
			Scripts:      lenientInt(def["scripts"]),
			Users:        lenientInt(def["users"]),
			Obfuscations: lenientInt(def["obfuscations"]),
		}
	}
	return nil
}

// MarshalJSON writes the shape the clients model; unknown fields are left out.
func (s KeyStats) MarshalJSON() ([]byte, error) {
	put := func(m map[string]any, k string, v *int64) {
		if v != nil {
			m[k] = *v
		}
	}
	executions := s.ExecutionData.Executions
	if executions == nil {
		executions = []int64{}
	}
	ed := map[string]any{"executions": executions}
	put(ed, "frequency", s.ExecutionData.Frequency)
	def := map[string]any{}
	put(def, "scripts", s.Stats.Default.Scripts)
	put(def, "users", s.Stats.Default.Users)
	put(def, "obfuscations", s.Stats.Default.Obfuscations)
	st := map[string]any{"default": def}
	put(st, "obfuscations", s.Stats.Obfuscations)
	put(st, "scripts", s.Stats.Scripts)
	put(st, "users", s.Stats.Users)
	put(st, "attacks_blocked", s.Stats.AttacksBlocked)
	put(st, "reset_at", s.Stats.ResetAt)
	return json.Marshal(map[string]any{"execution_data": ed, "stats": st})
}

func objectOf(raw json.RawMessage) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return m
}

// lenientInt reads a JSON number (integer or float, rounded down) or a
// numeric string; anything else, absent or null gives nil.
func lenientInt(raw json.RawMessage) *int64 {
	if len(raw) == 0 {
		return nil
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return nil
	}
	var num json.Number
	switch x := v.(type) {
	case json.Number:
		num = x
	case string:
		num = json.Number(strings.TrimSpace(x))
	default:
		return nil
	}
	if n, err := num.Int64(); err == nil {
		return &n
	}
	f, err := num.Float64()
	if err != nil || math.IsNaN(f) || f > math.MaxInt64 || f < math.MinInt64 {
		return nil
	}
	n := int64(math.Floor(f))
	return &n
}
