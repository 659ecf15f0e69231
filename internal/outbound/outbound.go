// Package outbound holds what the service tells the shop's own tools when
// something happens to an order: signed JSON webhooks to the shop's backend
// (OUTBOUND_WEBHOOK_URL) and a message to a Discord channel
// (DISCORD_WEBHOOK_URL). It builds and signs the requests and classifies
// the answers; internal/jobs records each event once and delivers it from
// a River job, retrying with backoff.
package outbound

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// EventType names what happened.
type EventType string

// The events a shop's backend may subscribe to (OUTBOUND_WEBHOOK_EVENTS).
const (
	OrderFulfilled    EventType = "order.fulfilled"
	OrderFailed       EventType = "order.failed"
	KeyRevoked        EventType = "key.revoked"
	KeyReissued       EventType = "key.reissued"
	KeyExpiring       EventType = "key.expiring"
	SubscriptionEnded EventType = "subscription.ended"
	// StockLow is posted to Discord only: the shop's backend has the
	// stock levels from the admin API.
	StockLow EventType = "stock.low"
)

// WebhookEvents are the events OUTBOUND_WEBHOOK_EVENTS may name, all of
// them by default.
var WebhookEvents = []EventType{OrderFulfilled, OrderFailed, KeyRevoked, KeyReissued, KeyExpiring, SubscriptionEnded}

// DiscordEvents are the events posted to the Discord channel: sales,
// failures, revocations (disputes, refunds) and stock running low.
var DiscordEvents = []EventType{OrderFulfilled, OrderFailed, KeyRevoked, StockLow}

// Destinations of a delivery.
const (
	DestinationWebhook = "webhook"
	DestinationDiscord = "discord"
)

// DefaultTimeout bounds one POST: connecting, sending and reading the
// answer's status.
const DefaultTimeout = 10 * time.Second

// Settings are the outgoing notifications the shop configured; the zero
// value sends nothing.
type Settings struct {
	// WebhookURLs are the shop backend's endpoints (OUTBOUND_WEBHOOK_URL,
	// comma-separated); each event is delivered to each of them.
	WebhookURLs []string
	// Secret signs every webhook (OUTBOUND_WEBHOOK_SECRET).
	Secret string
	// Events are the event types the endpoints receive
	// (OUTBOUND_WEBHOOK_EVENTS); empty means WebhookEvents.
	Events []EventType
	// DiscordURL is a Discord channel's webhook (DISCORD_WEBHOOK_URL);
	// it holds Discord's token, so it is never stored or logged.
	DiscordURL string
	// Timeout bounds one POST; 0 means DefaultTimeout.
	Timeout time.Duration
	// ExpiringWithin is how long before a key that will not renew runs
	// out key.expiring is sent: as far ahead as the buyer's expiry notice
	// (MAIL_EXPIRY_NOTICE_DAYS), or that setting's default while it is 0;
	// mail on or off. 0 means DefaultExpiringWithin.
	ExpiringWithin time.Duration
}

// DefaultExpiringWithin is ExpiringWithin's default: the default of
// MAIL_EXPIRY_NOTICE_DAYS, 3 days.
const DefaultExpiringWithin = 3 * 24 * time.Hour

// Expiring is ExpiringWithin, or its default.
func (s *Settings) Expiring() time.Duration {
	if s == nil || s.ExpiringWithin <= 0 {
		return DefaultExpiringWithin
	}
	return s.ExpiringWithin
}

// Enabled reports whether anything is sent at all.
func (s *Settings) Enabled() bool {
	return s != nil && (len(s.WebhookURLs) > 0 || s.DiscordURL != "")
}

// Destinations lists where an event of type t goes: the webhook endpoints
// subscribed to it, then Discord. For a webhook the endpoint is its URL;
// for Discord it is "discord", the URL being a secret.
func (s *Settings) Destinations(t EventType) []Destination {
	if s == nil {
		return nil
	}
	var out []Destination
	if slices.Contains(WebhookEvents, t) && (len(s.Events) == 0 || slices.Contains(s.Events, t)) {
		for _, u := range s.WebhookURLs {
			out = append(out, Destination{Kind: DestinationWebhook, Endpoint: u})
		}
	}
	if s.DiscordURL != "" && slices.Contains(DiscordEvents, t) {
		out = append(out, Destination{Kind: DestinationDiscord, Endpoint: DestinationDiscord})
	}
	return out
}

// URL is where d is posted now, or an error saying the setting that named
// it was removed since the event was recorded.
func (s *Settings) URL(d Destination) (string, error) {
	if s != nil {
		switch d.Kind {
		case DestinationDiscord:
			if s.DiscordURL != "" {
				return s.DiscordURL, nil
			}
			return "", errors.New("DISCORD_WEBHOOK_URL is no longer set: the Discord message is not sent")
		case DestinationWebhook:
			if slices.Contains(s.WebhookURLs, d.Endpoint) {
				return d.Endpoint, nil
			}
		}
	}
	return "", fmt.Errorf("%s is no longer in OUTBOUND_WEBHOOK_URL: the event is not sent there", d.Endpoint)
}

// Destination is one place an event is delivered.
type Destination struct {
	Kind     string // DestinationWebhook or DestinationDiscord
	Endpoint string // the webhook's URL, or "discord"
}

// ParseEvents reads OUTBOUND_WEBHOOK_EVENTS: a comma-separated list of
// WebhookEvents, or "all".
func ParseEvents(v string) ([]EventType, error) {
	var out []EventType
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "":
		case f == "all":
			return nil, nil
		case slices.Contains(WebhookEvents, EventType(f)):
			if !slices.Contains(out, EventType(f)) {
				out = append(out, EventType(f))
			}
		default:
			names := make([]string, len(WebhookEvents))
			for i, e := range WebhookEvents {
				names[i] = string(e)
			}
			return nil, fmt.Errorf("%q is not an event the service sends: name some of %s, or all", f, strings.Join(names, ", "))
		}
	}
	return out, nil
}

// MinSecretLength is the least length of OUTBOUND_WEBHOOK_SECRET.
const MinSecretLength = 32

// SignatureHeader carries a webhook's signature; IdempotencyHeader and
// EventIDHeader its event's ID, the same on every attempt and replay.
const (
	SignatureHeader   = "Fulfiller-Signature"
	IdempotencyHeader = "Idempotency-Key"
	EventIDHeader     = "Fulfiller-Event-Id"
)

// Sign is the Fulfiller-Signature header of body sent at t:
// "t=<unix>,v1=<hex HMAC-SHA256 of "<unix>.<body>" with secret>".
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret, ts string, body []byte) string {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(ts))
	h.Write([]byte("."))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// ErrBadSignature is a signature that does not verify.
var ErrBadSignature = errors.New("the Fulfiller-Signature header does not match the body and the secret")

// Verify checks header (Fulfiller-Signature) against body and secret, and
// that it was made within tolerance of now: what a receiver does, as in
// docs/api.md. Any v1 that matches is enough.
func Verify(header, secret string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("%w: it needs t=<unix> and v1=<hex>", ErrBadSignature)
	}
	if d := now.Sub(time.Unix(unix, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed %s from now, beyond %s", ErrBadSignature, d.Round(time.Second), tolerance)
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return ErrBadSignature
}
