package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"fulfiller/internal/luarmor"
)

// Messages of the real API (see the reference), plus the sandbox's own where
// the reference lists none. Clients must not branch on them; tests may.
const (
	msgSuccess         = "Success!"
	msgEdited          = "User has been edited successfully!"
	msgDeleted         = "User has been deleted!"
	msgReset           = "Successfully reset!"
	msgLinked          = "Discord ID successfully linked!"
	msgInvalidAPIKey   = "Invalid API key! Visit https://luarmor.net/ to get access." // luarmor-rs src/models/response.rs
	msgWrongAPIKey     = "Wrong API key"
	msgKeyNotFound     = "User key doesn't exist"
	msgDeleteNotFound  = "Key not found" // the delete's, luarmor-ts src/interfaces/IDeleteKey.ts
	msgProjectNotFound = "Project not found!"
	// msgDiscordExists answers an edit or a link to an ID another key holds;
	// msgDiscordExistCreate answers a create, in the spelling luarmor-ts
	// (src/interfaces/IKeyCreate.ts) types the create's answer with, one of
	// the three luarmor-rs (src/models/response.rs) knows.
	msgDiscordExists      = "Discord ID already exists"
	msgDiscordExistCreate = "Discord ID already exist."
	msgIdentifierExists   = "Identifier already exists."
	msgAlreadyLinked      = "This key already has a discord linked to it"
	msgCooldown           = "User is on cooldown."
	msgInvalidDiscordID   = "Invalid discord_id"
	msgTooManyRequests    = "Too many requests, slow down."
	msgBlacklisted        = "User has been blacklisted!"
	msgUnbanned           = "User has been unbanned!"
	msgScriptUpdated      = "Script updated successfully!"
	msgBannedNoReset      = "User is banned."
	msgResetDisabled      = "Reset Hwid is disabled for this script"
	msgUserKeyRequired    = "user_key is required"
	msgContentType        = "Content-Type must be application/json"
	msgUnbanTokenRequired = "unban_token is required"
	msgUnbanTokenUnknown  = "Invalid unban token: it is wrong, already used, or replaced by a newer blacklist"
)

// maxKeyDays bounds key_days so that now + key_days × 86400 cannot overflow;
// a century is far beyond any product.
const maxKeyDays = 36500

// apiMux routes the Luarmor API with Go 1.22 method and path patterns.
func (s *Sandbox) apiMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", serveStatus)

	account := routeSpec{keyInPath: true}
	s.handle(mux, "GET /v3/keys/{api_key}/details", account, s.keyDetails)
	s.handle(mux, "GET /v3/keys/{api_key}/stats", account, s.keyStats)

	read := routeSpec{project: true}
	write := routeSpec{project: true, jsonBody: true}
	s.handle(mux, "POST /v3/projects/{project_id}/users", write, s.createUser)
	s.handle(mux, "PATCH /v3/projects/{project_id}/users", write, s.editUser)
	s.handle(mux, "DELETE /v3/projects/{project_id}/users", read, s.deleteUser)
	s.handle(mux, "GET /v3/projects/{project_id}/users", read, s.listUsers)
	s.handle(mux, "POST /v3/projects/{project_id}/users/resethwid", write, s.resetHWID)
	s.handle(mux, "POST /v3/projects/{project_id}/users/linkdiscord", write, s.linkDiscord)
	s.handle(mux, "POST /v3/projects/{project_id}/users/blacklist", write, s.blacklist)
	// Unbanning needs only the token: it is what a seller hands to a banned
	// user, who has no API key.
	s.handle(mux, "GET /v3/projects/{project_id}/users/unban", routeSpec{project: true, public: true}, s.unban)
	s.handle(mux, "PUT /v3/projects/{project_id}/scripts/{script_id}", write, s.updateScript)

	// Anything else, including a known path with the wrong method, gets a
	// JSON 404 rather than ServeMux's plain-text page.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeReply(w, failure(http.StatusNotFound, fmt.Sprintf("Cannot %s %s", r.Method, redactPath(r.URL.Path))))
	})
	return mux
}

// routeSpec declares what an API route requires before its handler runs.
type routeSpec struct {
	public    bool // no Authorization header needed
	keyInPath bool // the {api_key} path segment must be the API key
	project   bool // the {project_id} path segment must name a project
	jsonBody  bool // takes a JSON body: Content-Type must be application/json
}

// apiCtx is what a handler sees; handlers run with s.mu held.
type apiCtx struct {
	r       *http.Request
	now     time.Time
	body    []byte
	strict  bool // refuse unknown body fields (Options.StrictBody)
	project *project
}

// reply is a JSON answer.
type reply struct {
	status int
	body   []byte
}

func failure(status int, message string) reply {
	return reply{status: status, body: envelope(false, message, nil)}
}

func success(message string, payload any) reply {
	return reply{status: http.StatusOK, body: envelope(true, message, payload)}
}

func writeReply(w http.ResponseWriter, rep reply) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(rep.status)
	_, _ = w.Write(rep.body)
}

// envelope renders {"success":...,"message":...,<payload fields>}: Luarmor
// puts payload fields at the top level next to success and message. payload
// must marshal to a JSON object; message is omitted when empty.
func envelope(ok bool, message string, payload any) []byte {
	var b bytes.Buffer
	b.WriteString(`{"success":`)
	b.WriteString(strconv.FormatBool(ok))
	if message != "" {
		m, _ := json.Marshal(message) // a string always marshals
		b.WriteString(`,"message":`)
		b.Write(m)
	}
	if payload != nil {
		p, err := json.Marshal(payload)
		if err != nil {
			// Payloads are the sandbox's own types: failing to marshal
			// them is a bug in this package, not a runtime condition.
			panic(fmt.Sprintf("luarmor sandbox: marshal payload: %v", err))
		}
		if inner := bytes.TrimSpace(p); len(inner) > 2 {
			b.WriteByte(',')
			b.Write(inner[1 : len(inner)-1])
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}

// handle registers an API route whose checks are described by spec.
func (s *Sandbox) handle(mux *http.ServeMux, pattern string, spec routeSpec, fn func(*apiCtx) reply) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		writeReply(w, s.dispatch(r, spec, fn))
	})
}

// dispatch runs the checks common to API routes in the order a client meets
// them (API key, Content-Type, project), then the handler under the mutex.
func (s *Sandbox) dispatch(r *http.Request, spec routeSpec, fn func(*apiCtx) reply) reply {
	if !spec.public && !s.validKey(r.Header.Get("Authorization")) {
		return failure(http.StatusForbidden, msgInvalidAPIKey)
	}
	if spec.keyInPath && !s.validKey(r.PathValue("api_key")) {
		return failure(http.StatusForbidden, msgWrongAPIKey)
	}
	var body []byte
	if spec.jsonBody {
		// Without the header the real API's body parser ignores the body,
		// so every field would be silently absent (a create would mint a
		// lifetime key). The sandbox refuses instead, to surface the bug.
		if !isJSONContentType(r.Header.Get("Content-Type")) {
			return failure(http.StatusBadRequest, msgContentType)
		}
		body, _ = io.ReadAll(r.Body) // an in-memory reader set by serveAPI
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	c := &apiCtx{r: r, now: s.now(), body: body, strict: s.strictBody}
	if spec.project {
		p, ok := s.projectLocked(r.PathValue("project_id"))
		if !ok {
			return failure(http.StatusNotFound, msgProjectNotFound)
		}
		p.liftExpiredBans(c.now)
		c.project = p
	}
	return fn(c)
}

func isJSONContentType(v string) bool {
	mt, _, err := mime.ParseMediaType(v)
	return err == nil && mt == "application/json"
}

// decode parses the JSON body into dst. An empty body counts as {}.
//
// Unknown fields are ignored, as the real API does, unless the sandbox is
// strict (Options.StrictBody): then they are refused, so that a misspelt
// field, which production would silently drop, fails the tests instead.
func (c *apiCtx) decode(dst any) (reply, bool) {
	body := bytes.TrimSpace(c.body)
	if len(body) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if c.strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(dst); err != nil {
		return failure(http.StatusBadRequest, "Invalid JSON body: "+err.Error()), false
	}
	if _, err := dec.Token(); err != io.EOF {
		return failure(http.StatusBadRequest, "Invalid JSON body: unexpected data after the object"), false
	}
	return reply{}, true
}

// lookup finds the key named by user_key or answers the error to send.
func (c *apiCtx) lookup(key string) (*user, reply, bool) {
	if key == "" {
		return nil, failure(http.StatusBadRequest, msgUserKeyRequired), false
	}
	u, ok := c.project.userLocked(key)
	if !ok {
		return nil, failure(http.StatusNotFound, msgKeyNotFound), false
	}
	return u, reply{}, true
}

// ---- GET /status ----

func serveStatus(w http.ResponseWriter, _ *http.Request) {
	b, _ := json.Marshal(luarmor.Status{ // a fixed struct always marshals
		Version:        "v3",
		Active:         true,
		Message:        "API is up and working!",
		Warning:        false,
		WarningMessage: "No warning",
	})
	writeReply(w, reply{status: http.StatusOK, body: b})
}

// ---- Account ----

func (s *Sandbox) keyDetails(c *apiCtx) reply {
	cooldown := int64(0)
	if s.resetCooldown > 0 {
		cooldown = int64(s.resetCooldown / time.Second)
	}
	d := luarmor.KeyDetails{
		Email:        "sandbox@example.com",
		ExpiresAt:    s.registeredAt.AddDate(1, 0, 0).Unix(),
		RegisteredAt: s.registeredAt.Unix(),
		Enabled:      1,
		Plan:         "p", // one letter, as luarmor-rs KeyPlan reads it: premium
		Projects:     make([]luarmor.Project, 0, len(s.projectOrder)),
	}
	for _, id := range s.projectOrder {
		p := s.projects[id]
		lp := luarmor.Project{
			Platform: "roblox",
			ID:       id,
			Name:     "Sandbox project " + id,
			Settings: luarmor.ProjectSettings{ResetHWIDCooldown: cooldown},
			Scripts:  make([]luarmor.Script, 0, len(p.scripts)),
		}
		for _, sc := range p.scripts {
			lp.Scripts = append(lp.Scripts, luarmor.Script{
				ScriptID:      sc.id,
				ScriptName:    sc.id,
				ScriptVersion: strconv.Itoa(sc.Version),
			})
		}
		d.Projects = append(d.Projects, lp)
	}
	return success(msgSuccess, d)
}

// keyStats reports account usage in the shape both public clients model
// (luarmor-rs src/models/v3/keys/stats.rs, luarmor-ts
// src/interfaces/IStats.ts; fixtures in ../testdata). stats.users counts the
// keys of all projects and default.users is the plan's limit (left out when
// Options.MaxUsers is negative); obfuscations is what is left of the
// plan's obfuscations, each script upload costing one; reset_at is the
// start of the next month (UTC). The clients do not say what frequency
// measures: the sandbox's graph has one point per month with keys or
// executions, oldest first, and frequency is 30 days in seconds. With
// noUsers=true stats.users is left out (luarmor-rs ScriptStatsNoUsers).
func (s *Sandbox) keyStats(c *apiCtx) reply {
	users := 0
	scripts := 0
	for _, p := range s.projects {
		users += len(p.users)
		scripts += len(p.scripts)
	}
	months := make([]string, 0, len(s.account.monthly))
	for m := range s.account.monthly {
		months = append(months, m)
	}
	slices.Sort(months)
	n := func(v int) *int64 { x := int64(v); return &x }
	executions := make([]int64, 0, len(months))
	for _, m := range months {
		executions = append(executions, int64(s.account.monthly[m].Executions))
	}
	now := c.now.UTC()
	st := luarmor.KeyStats{
		ExecutionData: luarmor.ExecutionData{Frequency: n(30 * secondsPerDay), Executions: executions},
		Stats: luarmor.UsageStats{
			Obfuscations:   n(max(planObfuscations-s.account.obfuscations, 0)),
			Scripts:        n(scripts),
			Users:          n(users),
			AttacksBlocked: n(0),
			Default:        luarmor.PlanDefaults{Scripts: n(planScripts), Obfuscations: n(planObfuscations)},
			ResetAt:        n(int(time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC).Unix())),
		},
	}
	if s.maxUsers > 0 {
		st.Stats.Default.Users = n(s.maxUsers)
	}
	if c.r.URL.Query().Get("noUsers") == "true" {
		st.Stats.Users = nil
	}
	return success(msgSuccess, st)
}

// ---- Users ----

// createUser implements POST .../users.
//
// Timing rules, from the reference:
//   - key_days N: the timer is pending until the first execution; the key
//     reports auth_expire -1 and key_days N until then. Giving an identifier
//     or a Discord ID does not start it: only an execution does (Execute).
//   - auth_expire T without key_days: with an identifier or a Discord ID the
//     key counts as claimed and T is kept; without either, the remaining time
//     becomes key_days = ceil((T-now)/86400) and auth_expire -1 until
//     activation.
//   - neither: a lifetime key (auth_expire -1, key_days 0).
//
// Both key_days and auth_expire at once is refused (400): the reference does
// not say which wins, so a client must not rely on either. A past auth_expire
// is refused too, since it would mint a dead key.
func (s *Sandbox) createUser(c *apiCtx) reply {
	var req luarmor.CreateUserRequest
	if rep, ok := c.decode(&req); !ok {
		return rep
	}
	if req.KeyDays < 0 || req.KeyDays > maxKeyDays {
		return failure(http.StatusBadRequest, fmt.Sprintf("Invalid key_days: must be from 0 (none) to %d", maxKeyDays))
	}
	if req.KeyDays > 0 && req.AuthExpire != nil {
		return failure(http.StatusBadRequest, "Give either key_days or auth_expire, not both")
	}
	if req.AuthExpire != nil && *req.AuthExpire != luarmor.NeverExpires && *req.AuthExpire <= c.now.Unix() {
		return failure(http.StatusBadRequest, "Invalid auth_expire: must be -1 or a future unix time")
	}
	if req.DiscordID != "" && !validDiscordID(req.DiscordID) {
		return failure(http.StatusBadRequest, msgInvalidDiscordID)
	}
	p := c.project
	if p.owner(req.Identifier, identifierOf, nil) != nil {
		return failure(http.StatusBadRequest, msgIdentifierExists)
	}
	if p.owner(req.DiscordID, discordOf, nil) != nil {
		return failure(http.StatusBadRequest, msgDiscordExistCreate)
	}

	u := &user{User: luarmor.User{
		UserKey:        p.newKeyLocked(),
		Identifier:     req.Identifier,
		IdentifierType: "HWID",
		DiscordID:      req.DiscordID,
		Note:           req.Note,
		Status:         statusFor(req.Identifier),
		AuthExpire:     luarmor.NeverExpires,
		KeyDays:        req.KeyDays,
	}}
	claimed := req.Identifier != "" || req.DiscordID != ""
	switch {
	case req.KeyDays > 0, req.AuthExpire == nil, *req.AuthExpire == luarmor.NeverExpires:
		// Pending timer or lifetime key: auth_expire stays -1.
	case claimed:
		u.AuthExpire = *req.AuthExpire
	default:
		remaining := *req.AuthExpire - c.now.Unix()
		u.KeyDays = int((remaining + secondsPerDay - 1) / secondsPerDay)
	}
	p.add(u)
	s.account.month(c.now).Users++
	return success(msgSuccess, struct {
		UserKey string `json:"user_key"`
	}{u.UserKey})
}

// statusFor is the status of a key whose identifier was just set: "active"
// with a HWID bound, otherwise "reset". A new key without HWID is "reset"
// because, like a reset key, it is waiting for the next execution to bind
// one; the reference defines no other status for it ("banned" is for banned
// unknown users, and a blacklisted key keeps its status with banned=1).
func statusFor(identifier string) string {
	if identifier != "" {
		return luarmor.StatusActive
	}
	return luarmor.StatusReset
}

// editUser implements PATCH .../users: absent fields are unchanged.
//
// identifier "" clears the HWID (status "reset") without counting a reset;
// a non-empty one binds it (status "active"). auth_expire is absolute (-1 =
// never) and may be in the past, which expires the key; setting it replaces a
// pending key_days timer. discord_id "" unlinks; a new ID replaces the link
// (PATCH is the seller's edit, so unlike linkdiscord it needs no force) but
// must not belong to another key of the project.
func (s *Sandbox) editUser(c *apiCtx) reply {
	var req luarmor.UpdateUserRequest
	if rep, ok := c.decode(&req); !ok {
		return rep
	}
	u, rep, ok := c.lookup(req.UserKey)
	if !ok {
		return rep
	}
	if req.AuthExpire != nil && *req.AuthExpire < luarmor.NeverExpires {
		return failure(http.StatusBadRequest, "Invalid auth_expire: must be -1 or a unix time")
	}
	if req.DiscordID != nil && *req.DiscordID != "" && !validDiscordID(*req.DiscordID) {
		return failure(http.StatusBadRequest, msgInvalidDiscordID)
	}
	if req.Identifier != nil && c.project.owner(*req.Identifier, identifierOf, u) != nil {
		return failure(http.StatusBadRequest, msgIdentifierExists)
	}
	if req.DiscordID != nil && c.project.owner(*req.DiscordID, discordOf, u) != nil {
		return failure(http.StatusBadRequest, msgDiscordExists)
	}

	if req.Identifier != nil {
		u.Identifier = *req.Identifier
		u.Status = statusFor(u.Identifier)
	}
	switch unclaimed := u.Identifier == "" && u.DiscordID == ""; {
	case req.AuthExpire == nil:
	case s.unclaimedAsDays && unclaimed && *req.AuthExpire > c.now.Unix():
		// Kept as key_days, which start at first use, as the create does.
		u.AuthExpire = luarmor.NeverExpires
		u.KeyDays = int((*req.AuthExpire - c.now.Unix() + secondsPerDay - 1) / secondsPerDay)
	default:
		u.AuthExpire = *req.AuthExpire
		u.KeyDays = 0
	}
	if req.Note != nil {
		u.Note = *req.Note
	}
	if req.DiscordID != nil {
		u.DiscordID = *req.DiscordID
	}
	return success(msgEdited, nil)
}

// deleteUser implements DELETE .../users?user_key=K.
func (s *Sandbox) deleteUser(c *apiCtx) reply {
	key := c.r.URL.Query().Get("user_key")
	u, rep, ok := c.lookup(key)
	if !ok {
		if key != "" {
			// The delete words it its own way (luarmor-ts IDeleteKey).
			return failure(http.StatusNotFound, msgDeleteNotFound)
		}
		return rep
	}
	c.project.remove(u)
	return success(msgDeleted, nil)
}

// listUsers implements GET .../users.
//
// Filters combine with AND. discord_id, user_key and identifier match
// exactly; search matches a case-insensitive substring of identifier,
// user_key, discord_id or note (the reference does not say; insensitive is
// the looser reading, so a caller must re-check matches exactly). No match is
// not an error: the answer is success with an empty array.
//
// Paging applies after filtering, over the matching keys in creation order:
// from is the inclusive start index (default 0) and until the exclusive end
// index (default: the number of matches), both clamped to the number of
// matches. Negative or non-integer values, or until < from, are refused with
// 400.
func (s *Sandbox) listUsers(c *apiCtx) reply {
	q := c.r.URL.Query()
	from, hasFrom, err := queryIndex(q.Get("from"))
	if err != nil {
		return failure(http.StatusBadRequest, "Invalid from: "+err.Error())
	}
	until, hasUntil, err := queryIndex(q.Get("until"))
	if err != nil {
		return failure(http.StatusBadRequest, "Invalid until: "+err.Error())
	}
	if hasFrom && hasUntil && until < from {
		return failure(http.StatusBadRequest, "Invalid until: must not be less than from")
	}

	discordID, userKey, identifier := q.Get("discord_id"), q.Get("user_key"), q.Get("identifier")
	search := strings.ToLower(q.Get("search"))
	matches := make([]luarmor.User, 0, len(c.project.users))
	for _, u := range c.project.users {
		switch {
		case discordID != "" && u.DiscordID != discordID,
			userKey != "" && u.UserKey != userKey,
			identifier != "" && u.Identifier != identifier,
			search != "" && !matchesSearch(u, search):
			continue
		}
		matches = append(matches, u.User)
	}

	if !hasUntil || until > len(matches) {
		until = len(matches)
	}
	from = min(from, until)
	// The users listing carries a message like every answer (luarmor-ts
	// models it on the listing's type).
	return success(msgSuccess, struct {
		Users []luarmor.User `json:"users"`
	}{matches[from:until]})
}

func matchesSearch(u *user, lowered string) bool {
	for _, f := range []string{u.Identifier, u.UserKey, u.DiscordID, u.Note} {
		if strings.Contains(strings.ToLower(f), lowered) {
			return true
		}
	}
	return false
}

// queryIndex parses a paging index; "" means absent.
func queryIndex(v string) (int, bool, error) {
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, false, fmt.Errorf("%q is not a non-negative integer", v)
	}
	return n, true, nil
}

// resetHWID implements POST .../users/resethwid: it clears the HWID so the
// next execution binds a new one. A project with resets disabled and banned
// keys are refused even with force; force only skips the cooldown. The cooldown runs from the previous reset
// (the first reset is always allowed) and ends exactly ResetCooldown later.
func (s *Sandbox) resetHWID(c *apiCtx) reply {
	var req luarmor.ResetHWIDRequest
	if rep, ok := c.decode(&req); !ok {
		return rep
	}
	u, rep, ok := c.lookup(req.UserKey)
	if !ok {
		return rep
	}
	if c.project.resetsDisabled {
		return failure(http.StatusBadRequest, msgResetDisabled)
	}
	if u.Banned == 1 {
		return failure(http.StatusBadRequest, msgBannedNoReset)
	}
	if !req.Force && s.resetCooldown > 0 && !u.lastResetAt.IsZero() && c.now.Before(u.lastResetAt.Add(s.resetCooldown)) {
		return failure(http.StatusBadRequest, msgCooldown)
	}
	u.Identifier = ""
	u.Status = luarmor.StatusReset
	u.LastReset = c.now.Unix()
	u.lastResetAt = c.now
	u.TotalResets++
	return success(msgReset, nil)
}

// linkDiscord implements POST .../users/linkdiscord.
//
// A key that already has a Discord ID is refused without force, even when it
// is the same ID, so a client retrying after a lost answer must look the key
// up rather than rely on an idempotent answer. force overwrites the link of
// this key only: an ID linked to another key of the project is refused even
// with force, since one Discord ID may hold only one key per project.
func (s *Sandbox) linkDiscord(c *apiCtx) reply {
	var req luarmor.LinkDiscordRequest
	if rep, ok := c.decode(&req); !ok {
		return rep
	}
	u, rep, ok := c.lookup(req.UserKey)
	if !ok {
		return rep
	}
	if !validDiscordID(req.DiscordID) {
		return failure(http.StatusBadRequest, msgInvalidDiscordID)
	}
	if u.DiscordID != "" && !req.Force {
		return failure(http.StatusBadRequest, msgAlreadyLinked)
	}
	if c.project.owner(req.DiscordID, discordOf, u) != nil {
		return failure(http.StatusBadRequest, msgDiscordExists)
	}
	u.DiscordID = req.DiscordID
	return success(msgLinked, nil)
}

// blacklist implements POST .../users/blacklist. Every call, including one on
// an already banned key, issues a new unban token, which invalidates the
// previous one. The token is not part of the answer (the reference does not
// promise it): read it back from the users endpoint. The status is left as
// it is: a banned key reports banned=1 next to its "active" or "reset"
// status. ban_expire is a future unix time after which the ban lifts by
// itself; absent or any negative value is a permanent ban (as the public
// clients use it).
func (s *Sandbox) blacklist(c *apiCtx) reply {
	var req luarmor.BlacklistRequest
	if rep, ok := c.decode(&req); !ok {
		return rep
	}
	u, rep, ok := c.lookup(req.UserKey)
	if !ok {
		return rep
	}
	expire := luarmor.NeverExpires
	if req.BanExpire != nil && *req.BanExpire >= 0 {
		if *req.BanExpire <= c.now.Unix() {
			return failure(http.StatusBadRequest, "Invalid ban_expire: must be -1 or a future unix time")
		}
		expire = *req.BanExpire
	}
	token := randomString(keyLength)
	for token == u.UnbanToken {
		token = randomString(keyLength)
	}
	u.Banned = 1
	u.BanReason = req.BanReason
	u.BanExpire = expire
	u.UnbanToken = token
	return success(msgBlacklisted, nil)
}

// unban implements GET .../users/unban?unban_token=T, which needs no API
// key. The token is single-use: unbanning clears it.
func (s *Sandbox) unban(c *apiCtx) reply {
	token := c.r.URL.Query().Get("unban_token")
	if token == "" {
		return failure(http.StatusBadRequest, msgUnbanTokenRequired)
	}
	for _, u := range c.project.users {
		if u.Banned == 1 && u.UnbanToken == token {
			u.unban()
			return success(msgUnbanned, nil)
		}
	}
	return failure(http.StatusNotFound, msgUnbanTokenUnknown)
}

// ---- Scripts ----

// updateScript implements PUT .../scripts/{script_id}. The sandbox has no
// script catalogue to check against, so an unknown script ID is created on
// first upload; each upload bumps its version and uses one obfuscation.
func (s *Sandbox) updateScript(c *apiCtx) reply {
	var req luarmor.UpdateScriptRequest
	if rep, ok := c.decode(&req); !ok {
		return rep
	}
	if req.Script == "" {
		return failure(http.StatusBadRequest, "script is required")
	}
	id := c.r.PathValue("script_id")
	p := c.project
	i := slices.IndexFunc(p.scripts, func(sc *script) bool { return sc.id == id })
	if i < 0 {
		p.scripts = append(p.scripts, &script{id: id})
		i = len(p.scripts) - 1
	}
	sc := p.scripts[i]
	sc.ScriptUpload = ScriptUpload{
		Version:   sc.Version + 1,
		Source:    req.Script,
		Silent:    req.Silent,
		FFA:       req.FFA,
		Heartbeat: req.Heartbeat,
		Lightning: req.Lightning,
	}
	s.account.obfuscations++
	return success(msgScriptUpdated, nil)
}
