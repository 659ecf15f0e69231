package logging

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Sampled logs at most one record per interval and counts the ones it
// drops, for a failure that repeats on every request while a dependency is
// down: an outage reads as one line every few seconds, not one per request.
// The zero value logs at most once every 10 seconds.
type Sampled struct {
	Every time.Duration

	mu      sync.Mutex
	last    time.Time
	dropped int
}

// Log logs msg with args at level unless a record was logged less than
// Every ago. A logged record carries "suppressed": the records dropped
// since the previous one.
func (s *Sampled) Log(ctx context.Context, l *slog.Logger, level slog.Level, msg string, args ...any) {
	every := s.Every
	if every <= 0 {
		every = 10 * time.Second
	}
	s.mu.Lock()
	now := time.Now()
	if !s.last.IsZero() && now.Sub(s.last) < every {
		s.dropped++
		s.mu.Unlock()
		return
	}
	dropped := s.dropped
	s.last, s.dropped = now, 0
	s.mu.Unlock()
	l.Log(ctx, level, msg, append(args, "suppressed", dropped)...)
}

// SampleByMessage returns a logger that passes on at most one record of
// each message every interval, the first one carrying "suppressed": how
// many of that message were dropped since. For a library that logs the same
// failure many times a second while a dependency is down (River's job
// fetches during a database outage).
func SampleByMessage(l *slog.Logger, every time.Duration) *slog.Logger {
	return slog.New(&sampling{Handler: l.Handler(), every: every, state: &sampleState{
		last: map[string]time.Time{}, dropped: map[string]int{}}})
}

type sampleState struct {
	mu      sync.Mutex
	last    map[string]time.Time
	dropped map[string]int
}

type sampling struct {
	slog.Handler
	every time.Duration
	state *sampleState
}

func (h *sampling) Handle(ctx context.Context, r slog.Record) error {
	s := h.state
	s.mu.Lock()
	if last, ok := s.last[r.Message]; ok && r.Time.Sub(last) < h.every {
		s.dropped[r.Message]++
		s.mu.Unlock()
		return nil
	}
	dropped := s.dropped[r.Message]
	s.last[r.Message] = r.Time
	delete(s.dropped, r.Message)
	s.mu.Unlock()
	if dropped > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", dropped))
	}
	return h.Handler.Handle(ctx, r)
}

func (h *sampling) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &sampling{Handler: h.Handler.WithAttrs(attrs), every: h.every, state: h.state}
}

func (h *sampling) WithGroup(name string) slog.Handler {
	return &sampling{Handler: h.Handler.WithGroup(name), every: h.every, state: h.state}
}
