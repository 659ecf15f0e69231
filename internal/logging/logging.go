// Package logging holds the service's slog helpers, and its one log filter:
// every logger of the service is wrapped by ServiceHandler, which redacts
// Checkout Session IDs, license keys and secrets from every record
// (Redact), whatever code or library logs them.
package logging

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"regexp"
)

// AtLeast returns a logger that drops records below min; used to keep
// libraries' informational chatter (River, migrations) out of the log.
func AtLeast(l *slog.Logger, min slog.Level) *slog.Logger {
	return slog.New(floor{l.Handler(), min})
}

type floor struct {
	slog.Handler
	min slog.Level
}

func (h floor) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h floor) WithAttrs(attrs []slog.Attr) slog.Handler {
	return floor{h.Handler.WithAttrs(attrs), h.min}
}

func (h floor) WithGroup(name string) slog.Handler {
	return floor{h.Handler.WithGroup(name), h.min}
}

// OrderRef is the reference under which logs name an order: a short hash of
// its Checkout Session ID. The ID itself reads the order's keys from the
// order API, so it never goes into a log; the reference grants nothing.
func OrderRef(checkoutSessionID string) string {
	sum := sha256.Sum256([]byte(checkoutSessionID))
	return "ord_" + hex.EncodeToString(sum[:6])
}

// sessionIDs matches Checkout Session IDs inside a text.
var sessionIDs = regexp.MustCompile(`cs_(?:test|live)_[A-Za-z0-9]+`)

// ScrubSessionIDs replaces every Checkout Session ID in text (an error
// message that names its order) by the order's reference.
func ScrubSessionIDs(text string) string {
	return sessionIDs.ReplaceAllStringFunc(text, OrderRef)
}
