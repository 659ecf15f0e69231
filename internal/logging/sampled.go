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
