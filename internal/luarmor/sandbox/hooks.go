package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"fulfiller/internal/luarmor"
)

// hookPrefix is where the test hooks are served over HTTP. The hooks need no
// API key, are not logged, not budgeted and never faulted: they are the test
// harness, not the API.
//
// Routes (JSON bodies; durations are Go duration strings such as "250ms"):
//
//	POST   /_sandbox/execute                 {"project_id","user_key","hwid"} → {"user":{...}}
//	POST   /_sandbox/faults                  {"method","path_contains","kind","times","latency"}
//	PUT    /_sandbox/faults/random           {"faults":[{"method","path_contains","kind","rate","latency"}]}
//	DELETE /_sandbox/faults                  clear all faults, queued and random
//	GET    /_sandbox/calls                   → {"calls":[{"time","method","path","query","body","status","fault","latency"}]}
//	DELETE /_sandbox/calls                   clear the call log
//	GET    /_sandbox/projects/{project_id}/users             → {"users":[...]}
//	GET    /_sandbox/projects/{project_id}/users/{user_key}  → {"user":{...}} or 404
//	PATCH  /_sandbox/projects/{project_id}/users/{user_key}  UserState → {"user":{...}}: use or dashboard edits
//	GET    /_sandbox/projects/{project_id}/scripts/{script_id} → {"script":{...}} or 404
//	PUT    /_sandbox/projects/{project_id}/hwid-resets       {"enabled":false} turns HWID resets off (or on)
//	PUT    /_sandbox/limit                   {"limit":60,"window":"1m"}
//	PUT    /_sandbox/latency                 {"latency":"50ms"} or a range {"latency":"50ms","max":"200ms"}
//
// Every answer is an envelope {"success":...,"message":...}; a refused
// execution also carries "error", a stable code: project_not_found,
// key_not_found, invalid_hwid, banned, expired or hwid_mismatch.
const hookPrefix = "/_sandbox"

func (s *Sandbox) hookMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /_sandbox/execute", s.hookExecute)
	mux.HandleFunc("POST /_sandbox/faults", s.hookInjectFault)
	mux.HandleFunc("PUT /_sandbox/faults/random", s.hookSetRandomFaults)
	mux.HandleFunc("DELETE /_sandbox/faults", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearFaults()
		writeReply(w, success("Faults cleared", nil))
	})
	mux.HandleFunc("GET /_sandbox/calls", s.hookCalls)
	mux.HandleFunc("DELETE /_sandbox/calls", func(w http.ResponseWriter, _ *http.Request) {
		s.ResetCalls()
		writeReply(w, success("Calls cleared", nil))
	})
	mux.HandleFunc("GET /_sandbox/projects/{project_id}/users", func(w http.ResponseWriter, r *http.Request) {
		users := s.Users(r.PathValue("project_id"))
		if users == nil {
			users = []luarmor.User{}
		}
		writeReply(w, success("", struct {
			Users []luarmor.User `json:"users"`
		}{users}))
	})
	mux.HandleFunc("GET /_sandbox/projects/{project_id}/users/{user_key}", func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.User(r.PathValue("project_id"), r.PathValue("user_key"))
		if !ok {
			writeReply(w, failure(http.StatusNotFound, "Key not found"))
			return
		}
		writeReply(w, success("", struct {
			User luarmor.User `json:"user"`
		}{u}))
	})
	mux.HandleFunc("PATCH /_sandbox/projects/{project_id}/users/{user_key}", s.hookSetUserState)
	mux.HandleFunc("GET /_sandbox/projects/{project_id}/scripts/{script_id}", func(w http.ResponseWriter, r *http.Request) {
		sc, ok := s.Script(r.PathValue("project_id"), r.PathValue("script_id"))
		if !ok {
			writeReply(w, failure(http.StatusNotFound, "Script not found"))
			return
		}
		writeReply(w, success("", struct {
			Script scriptJSON `json:"script"`
		}{scriptJSON(sc)}))
	})
	mux.HandleFunc("PUT /_sandbox/projects/{project_id}/hwid-resets", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Enabled bool `json:"enabled"`
		}
		if !decodeHook(w, r, &req) {
			return
		}
		if !s.SetHWIDResetsEnabled(r.PathValue("project_id"), req.Enabled) {
			writeReply(w, failure(http.StatusNotFound, msgProjectNotFound))
			return
		}
		writeReply(w, success("HWID resets set", nil))
	})
	mux.HandleFunc("PUT /_sandbox/limit", s.hookSetLimit)
	mux.HandleFunc("PUT /_sandbox/latency", s.hookSetLatency)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeReply(w, failure(http.StatusNotFound, fmt.Sprintf("No sandbox hook %s %s", r.Method, r.URL.Path)))
	})
	return mux
}

// decodeHook parses a hook body strictly. Hooks do not insist on a
// Content-Type: they are for people and scripts driving a sandbox by hand.
func decodeHook(w http.ResponseWriter, r *http.Request, dst any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		err = dec.Decode(dst)
	}
	if err != nil {
		writeReply(w, failure(http.StatusBadRequest, "Invalid JSON body: "+err.Error()))
		return false
	}
	return true
}

// parseDuration parses an optional Go duration string.
func parseDuration(field, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("invalid %s: %w", field, err)
	}
	return d, nil
}

func (s *Sandbox) hookExecute(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ProjectID string `json:"project_id"`
		UserKey   string `json:"user_key"`
		HWID      string `json:"hwid"`
	}
	if !decodeHook(w, r, &req) {
		return
	}
	if err := s.Execute(req.ProjectID, req.UserKey, req.HWID); err != nil {
		status, code := executeErrorCode(err)
		writeReply(w, reply{status: status, body: envelope(false, err.Error(), struct {
			Error string `json:"error"`
		}{code})})
		return
	}
	u, _ := s.User(req.ProjectID, req.UserKey)
	writeReply(w, success("Executed", struct {
		User luarmor.User `json:"user"`
	}{u}))
}

func (s *Sandbox) hookSetUserState(w http.ResponseWriter, r *http.Request) {
	var st UserState
	if !decodeHook(w, r, &st) {
		return
	}
	u, err := s.SetUserState(r.PathValue("project_id"), r.PathValue("user_key"), st)
	switch {
	case errors.Is(err, ErrInvalidState):
		writeReply(w, failure(http.StatusBadRequest, err.Error()))
		return
	case err != nil:
		writeReply(w, failure(http.StatusNotFound, err.Error()))
		return
	}
	writeReply(w, success("State set", struct {
		User luarmor.User `json:"user"`
	}{u}))
}

// executeErrorCode maps an Execute error to an HTTP status and a stable code
// that a remote driver can branch on.
func executeErrorCode(err error) (int, string) {
	switch {
	case errors.Is(err, ErrProjectNotFound):
		return http.StatusNotFound, "project_not_found"
	case errors.Is(err, ErrKeyNotFound):
		return http.StatusNotFound, "key_not_found"
	case errors.Is(err, ErrInvalidHWID):
		return http.StatusBadRequest, "invalid_hwid"
	case errors.Is(err, ErrBanned):
		return http.StatusForbidden, "banned"
	case errors.Is(err, ErrExpired):
		return http.StatusForbidden, "expired"
	case errors.Is(err, ErrHWIDMismatch):
		return http.StatusConflict, "hwid_mismatch"
	}
	return http.StatusInternalServerError, "unknown"
}

func (s *Sandbox) hookInjectFault(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Method       string    `json:"method"`
		PathContains string    `json:"path_contains"`
		Kind         FaultKind `json:"kind"`
		Times        int       `json:"times"`
		Latency      string    `json:"latency"`
	}
	if !decodeHook(w, r, &req) {
		return
	}
	if !req.Kind.Valid() {
		writeReply(w, failure(http.StatusBadRequest, fmt.Sprintf("Unknown fault kind %q", req.Kind)))
		return
	}
	latency, err := parseDuration("latency", req.Latency)
	if err != nil {
		writeReply(w, failure(http.StatusBadRequest, err.Error()))
		return
	}
	s.InjectFault(Fault{
		Method:       req.Method,
		PathContains: req.PathContains,
		Kind:         req.Kind,
		Times:        req.Times,
		Latency:      latency,
	})
	writeReply(w, success("Fault injected", nil))
}

func (s *Sandbox) hookSetRandomFaults(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Faults []struct {
			Method       string    `json:"method"`
			PathContains string    `json:"path_contains"`
			Kind         FaultKind `json:"kind"`
			Rate         float64   `json:"rate"`
			Latency      string    `json:"latency"`
		} `json:"faults"`
	}
	if !decodeHook(w, r, &req) {
		return
	}
	faults := make([]RandomFault, len(req.Faults))
	for i, f := range req.Faults {
		latency, err := parseDuration("latency", f.Latency)
		if err != nil {
			writeReply(w, failure(http.StatusBadRequest, err.Error()))
			return
		}
		faults[i] = RandomFault{Method: f.Method, PathContains: f.PathContains, Kind: f.Kind, Rate: f.Rate, Latency: latency}
	}
	if err := validateRandomFaults(faults); err != nil {
		writeReply(w, failure(http.StatusBadRequest, err.Error()))
		return
	}
	s.SetRandomFaults(faults...)
	writeReply(w, success("Random faults set", nil))
}

// callJSON is a Call over HTTP; the body is text since API bodies are JSON.
type callJSON struct {
	Time    time.Time `json:"time"`
	Method  string    `json:"method"`
	Path    string    `json:"path"`
	Query   string    `json:"query"`
	Body    string    `json:"body"`
	Status  int       `json:"status"`
	Fault   FaultKind `json:"fault"`
	Latency string    `json:"latency"`
}

func (s *Sandbox) hookCalls(w http.ResponseWriter, _ *http.Request) {
	calls := s.Calls()
	out := make([]callJSON, len(calls))
	for i, c := range calls {
		out[i] = callJSON{
			Time:    c.Time,
			Method:  c.Method,
			Path:    c.Path,
			Query:   c.Query,
			Body:    string(c.Body),
			Status:  c.Status,
			Fault:   c.Fault,
			Latency: c.Latency.String(),
		}
	}
	writeReply(w, success("", struct {
		Calls []callJSON `json:"calls"`
	}{out}))
}

// scriptJSON is a ScriptUpload over HTTP.
type scriptJSON struct {
	Version   int    `json:"version"`
	Source    string `json:"source"`
	Silent    bool   `json:"silent"`
	FFA       bool   `json:"ffa"`
	Heartbeat bool   `json:"heartbeat"`
	Lightning bool   `json:"lightning"`
}

func (s *Sandbox) hookSetLimit(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Limit  int    `json:"limit"`
		Window string `json:"window"`
	}
	if !decodeHook(w, r, &req) {
		return
	}
	window, err := parseDuration("window", req.Window)
	if err != nil {
		writeReply(w, failure(http.StatusBadRequest, err.Error()))
		return
	}
	s.SetLimit(req.Limit, window)
	writeReply(w, success("Limit set", nil))
}

func (s *Sandbox) hookSetLatency(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Latency string `json:"latency"`
		Max     string `json:"max"`
	}
	if !decodeHook(w, r, &req) {
		return
	}
	latency, err := parseDuration("latency", req.Latency)
	if err != nil {
		writeReply(w, failure(http.StatusBadRequest, err.Error()))
		return
	}
	most, err := parseDuration("max", req.Max)
	if err != nil {
		writeReply(w, failure(http.StatusBadRequest, err.Error()))
		return
	}
	s.SetLatencyRange(latency, max(most, latency))
	writeReply(w, success("Latency set", nil))
}
