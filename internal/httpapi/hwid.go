package httpapi

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"fulfiller/internal/jobs"
	"fulfiller/internal/order"
)

// Bounds of the HWID reset endpoint per client. A buyer resets a key a day
// at most; the burst covers an order's few keys. The bound is what keeps
// the endpoint from being used to probe keys: every request costs a token,
// whatever its answer.
const (
	hwidResetRate  = 0.1 // a token every 10 s
	hwidResetBurst = 5
	// hwidResetRetryAfter is the Retry-After of a rate-limited request:
	// the time one token takes to come back.
	hwidResetRetryAfter = "10"
	// maxUserKeyLength is far above Luarmor's keys (about 32 characters).
	maxUserKeyLength = 128
	maxResetBody     = 4 << 10
)

// HWIDResetJSON is a key's latest self-service HWID reset in the order API.
type HWIDResetJSON struct {
	Status      string `json:"status"` // none, queued, done, failed
	LastResetAt *int64 `json:"last_reset_at,omitempty"`
	// NextResetAt is when the next reset may be requested; absent when it
	// may be now.
	NextResetAt *int64 `json:"next_reset_at,omitempty"`
	Message     string `json:"message,omitempty"` // why it failed
}

func renderHWIDReset(r order.HWIDReset, now time.Time) HWIDResetJSON {
	out := HWIDResetJSON{Status: string(r.State())}
	if r.LastResetAt != nil {
		v := r.LastResetAt.Unix()
		out.LastResetAt = &v
	}
	if !r.AllowedAt(now) {
		v := r.NextResetAt.Unix()
		out.NextResetAt = &v
	}
	if r.Status == order.HWIDResetFailed {
		out.Message = r.Message
	}
	return out
}

// resetHWID serves POST /v1/orders/{id}/reset-hwid: a buyer
// asks for the HWID of one of the order's keys to be cleared, so the key
// runs on a new machine. 202 when queued, 404 alike for an unknown order
// and a key not of that order (and a malformed ID, a refused link or a
// revoked session ID), 409 for a key that is
// not active, 429 cooldown within HWID_RESET_COOLDOWN, 429 rate_limited
// past the client's bound.
func (s *Server) resetHWID(w http.ResponseWriter, r *http.Request) {
	if !s.hwidClients.allow(s.clientIP(r)) {
		w.Header().Set("Retry-After", hwidResetRetryAfter)
		s.writeError(w, r, order.Errorf(order.ERATELIMITED,
			"too many HWID reset requests from this address; retry in %s seconds", hwidResetRetryAfter))
		return
	}
	userKey, err := decodeResetRequest(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	link, err := s.openLink(r, r.PathValue("checkout_session_id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if link.sessionID == "" {
		s.writeError(w, r, jobs.ErrKeyNotInOrder)
		return
	}
	reset, err := s.Orders.RequestHWIDReset(r.Context(), link.access, link.sessionID, userKey)
	var cooldown *order.CooldownError
	if errors.As(err, &cooldown) && cooldown.Reset.NextResetAt != nil {
		next := *cooldown.Reset.NextResetAt
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(time.Until(next).Seconds())))))
		writeJSON(w, statusOf[order.ECOOLDOWN], map[string]any{
			"error": cooldown.Error(), "code": order.ECOOLDOWN, "next_reset_at": next.Unix()})
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{
		"user_key": userKey, "status": order.HWIDResetQueued, "next_reset_at": reset.NextResetAt.Unix()})
}

// decodeResetRequest reads {"user_key": "..."} strictly: one JSON object,
// no other field, a key of 1 to maxUserKeyLength characters.
func decodeResetRequest(w http.ResponseWriter, r *http.Request) (string, error) {
	var req struct {
		UserKey *string `json:"user_key"`
	}
	if err := decodeJSONBody(w, r, &req, maxResetBody); err != nil {
		return "", err
	}
	if req.UserKey == nil || len(*req.UserKey) == 0 || len(*req.UserKey) > maxUserKeyLength {
		return "", order.Errorf(order.EINVALID, `the body must be {"user_key": "<one of the order's keys>"}`)
	}
	return *req.UserKey, nil
}
