package order

import (
	"fmt"
	"time"
)

// DefaultHWIDResetCooldown is the least time between two self-service HWID
// resets of one key when HWID_RESET_COOLDOWN is not set.
const DefaultHWIDResetCooldown = 24 * time.Hour

// Error codes of the self-service HWID reset, mapped to HTTP statuses by
// the HTTP adapter's one table.
const (
	// ECONFLICT: the request is refused by the state of what it names (a
	// revoked order, a banned key).
	ECONFLICT = "conflict"
	// ECOOLDOWN: the key's HWID was reset too recently (HWID_RESET_COOLDOWN).
	ECOOLDOWN = "cooldown"
)

// HWIDResetStatus is the state of a key's latest self-service HWID reset.
type HWIDResetStatus string

const (
	HWIDResetNone   HWIDResetStatus = "none"   // never asked for
	HWIDResetQueued HWIDResetStatus = "queued" // accepted; a job will clear the HWID
	HWIDResetDone   HWIDResetStatus = "done"   // Luarmor cleared the HWID
	// HWIDResetFailed: Luarmor refused for good (resets disabled, key
	// banned or gone); Message says why, and the cooldown was given back.
	HWIDResetFailed HWIDResetStatus = "failed"
)

// HWIDReset is a key's latest self-service HWID reset. The zero value is a
// key never reset.
type HWIDReset struct {
	// Request numbers the accepted requests of the key; the job of a
	// request acts only while it is the latest.
	Request     int
	Status      HWIDResetStatus
	RequestedAt time.Time
	// NextResetAt is when the next request is accepted; nil: now.
	NextResetAt *time.Time
	// LastResetAt is the latest reset Luarmor applied; nil: none yet.
	LastResetAt *time.Time
	// Resets counts the resets Luarmor applied.
	Resets  int
	Message string
}

// State is the reset's status, HWIDResetNone for a key never reset.
func (r HWIDReset) State() HWIDResetStatus {
	if r.Status == "" {
		return HWIDResetNone
	}
	return r.Status
}

// AllowedAt reports whether a new reset may be requested at now.
func (r HWIDReset) AllowedAt(now time.Time) bool {
	return r.NextResetAt == nil || !now.Before(*r.NextResetAt)
}

// CooldownError refuses a reset requested within the key's cooldown.
type CooldownError struct {
	Reset HWIDReset
}

// timeLayout writes times in buyer-facing messages, always in UTC.
const timeLayout = "2006-01-02 15:04:05"

func (e *CooldownError) Error() string {
	if e.Reset.NextResetAt == nil {
		return "a reset of this key's HWID is under way; try again shortly"
	}
	const layout = timeLayout
	next := e.Reset.NextResetAt.UTC().Format(layout)
	if e.Reset.Status == HWIDResetDone && e.Reset.LastResetAt != nil {
		return "this key's HWID was reset at " + e.Reset.LastResetAt.UTC().Format(layout) +
			"; the next reset is allowed at " + next + " (UTC)"
	}
	return "a reset of this key's HWID was requested at " + e.Reset.RequestedAt.UTC().Format(layout) +
		"; the next reset is allowed at " + next + " (UTC)"
}

// Unwrap makes a CooldownError an *Error of code ECOOLDOWN.
func (e *CooldownError) Unwrap() error { return &Error{Code: ECOOLDOWN, Message: e.Error()} }

// HWIDResetRefusal says why the HWID of key k, of an order in status
// orderStatus, may not be reset at now, in words for the buyer; "" when it
// may. Only an active, unexpired key of a live order is reset: a reset must
// never hand a revoked, banned or suspended key to a new machine.
func HWIDResetRefusal(orderStatus Status, k Key, now time.Time) string {
	switch {
	case orderStatus == StatusRevoked:
		return "this order's payment was taken back, so its keys are revoked and cannot be reset"
	case orderStatus == StatusFailed:
		return "this order failed, so its keys are not active and cannot be reset; contact the seller"
	case k.Suspended: // an active key blacklisted while its subscription is past due
		return "this key is suspended until its subscription is paid, and cannot be reset meanwhile"
	case k.Status == KeyBlacklisted:
		return "this key is banned and cannot be reset"
	case k.Status != KeyActive:
		return fmt.Sprintf("this key is %s, not active, and cannot be reset", k.Status)
	case k.AuthExpire != nil && *k.AuthExpire > 0 && *k.AuthExpire <= now.Unix():
		return "this key expired at " + time.Unix(*k.AuthExpire, 0).UTC().Format(timeLayout) + " (UTC) and cannot be reset"
	}
	return ""
}
