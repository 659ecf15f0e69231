package luarmor

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
	Plan         string    `json:"plan"`
	Projects     []Project `json:"projects"`
}

// Project is one project of the API key's account.
type Project struct {
	ID       string          `json:"id"`
	Name     string          `json:"name"`
	Settings ProjectSettings `json:"settings"`
	Scripts  []Script        `json:"scripts"`
}

// ProjectSettings holds the project settings the details endpoint reports.
type ProjectSettings struct {
	ResetHWIDCooldown int64 `json:"reset_hwid_cooldown"` // seconds
}

// Script is one script of a project.
type Script struct {
	ScriptID      string `json:"script_id"`
	ScriptName    string `json:"script_name"`
	ScriptVersion string `json:"script_version"`
	UIVersion     string `json:"ui_version"`
}

// KeyStats is the answer of GET /v3/keys/{api_key}/stats.
type KeyStats struct {
	DefaultObfuscations int            `json:"default_obfuscations"`
	ObfuscationsLeft    int            `json:"obfuscations_left"`
	MaxObfuscations     int            `json:"max_obfuscations"`
	MaxUsers            int            `json:"max_users"`
	Users               int            `json:"users"`
	Executions          int            `json:"executions"`
	AttacksBlocked      int            `json:"attacks_blocked"`
	Monthly             []MonthlyStats `json:"monthly_graph"`
}

// MonthlyStats is one point of the stats endpoint's monthly graph.
type MonthlyStats struct {
	Month      string `json:"month"`
	Executions int    `json:"executions"`
	Users      int    `json:"users"`
}
