package logging

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// New is the service's logger: JSON (format "json") or logfmt-like text
// (format "text") lines at level and above, with its context's attributes
// and redacted (ServiceHandler).
func New(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(ServiceHandler(slog.NewTextHandler(w, opts)))
	}
	return slog.New(ServiceHandler(slog.NewJSONHandler(w, opts)))
}

// MaskKey names a license key (a Luarmor user key) by its last four
// characters, enough to tell a buyer's keys apart in a support conversation
// and too little to use one. Stripe API keys are masked by stripekey.Mask,
// which keeps their sk_/rk_ prefix.
func MaskKey(key string) string {
	if utf8.RuneCountInString(key) <= 8 {
		return "…" // too short for any part of it to be safe to show
	}
	r := []rune(key)
	return "…" + string(r[len(r)-4:])
}

// MaxReasonLength bounds a failure reason, stored or logged: a reason is
// built from hostile input (an order's price IDs, Luarmor's answers).
const MaxReasonLength = 500

// Truncate shortens text to at most limit characters (not bytes, so a
// multi-byte character is never cut in two), saying how much was left out.
func Truncate(text string, limit int) string {
	if utf8.RuneCountInString(text) <= limit {
		return text
	}
	r := []rune(text)
	keep := limit
	var suffix string
	// The suffix's own length decides how much is kept; the second pass
	// counts what the first one cut.
	for range 2 {
		suffix = "… (" + strconv.Itoa(len(r)-keep) + " more characters)"
		keep = max(0, limit-utf8.RuneCountInString(suffix))
	}
	return string(r[:keep]) + suffix
}

// SampledByKey is a Sampled per key (a client's address), so one noisy
// client is logged once in a while with a count while another client's
// first record still gets through. At most MaxKeys are tracked; past that
// the keys share one sampler, so a flood of addresses cannot grow memory.
// The zero value samples every 10 seconds, up to 10,000 keys.
type SampledByKey struct {
	Every   time.Duration
	MaxKeys int

	mu       sync.Mutex
	samplers map[string]*Sampled
	overflow Sampled
}

// Log logs msg with args and key at level unless a record of the same key
// was logged less than Every ago; the logged record carries "suppressed":
// that key's records dropped since its previous one.
func (s *SampledByKey) Log(ctx context.Context, l *slog.Logger, level slog.Level, key, msg string, args ...any) {
	s.sampler(key).Log(ctx, l, level, msg, args...)
}

func (s *SampledByKey) sampler(key string) *Sampled {
	s.mu.Lock()
	defer s.mu.Unlock()
	every, maxKeys := s.Every, s.MaxKeys
	if every <= 0 {
		every = 10 * time.Second
	}
	if maxKeys <= 0 {
		maxKeys = 10000
	}
	if s.samplers == nil {
		s.samplers = map[string]*Sampled{}
	}
	if sm, ok := s.samplers[key]; ok {
		return sm
	}
	if len(s.samplers) >= maxKeys {
		s.forgetQuiet(every)
	}
	if len(s.samplers) >= maxKeys {
		s.overflow.Every = every
		return &s.overflow
	}
	sm := &Sampled{Every: every}
	s.samplers[key] = sm
	return sm
}

// forgetQuiet drops the samplers whose interval has passed with nothing
// dropped: a new sampler would log the next record just the same.
func (s *SampledByKey) forgetQuiet(every time.Duration) {
	now := time.Now()
	for k, sm := range s.samplers {
		sm.mu.Lock()
		quiet := now.Sub(sm.last) >= every && sm.dropped == 0
		sm.mu.Unlock()
		if quiet {
			delete(s.samplers, k)
		}
	}
}
