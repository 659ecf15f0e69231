package stripeapi

import (
	"fmt"
	"log/slog"
)

// slogLogger adapts stripe-go's LeveledLoggerInterface to log/slog, keeping
// only warnings.
//
// stripe-go's default logger prints to stderr on its own, outside the
// service's structured logs. Of its levels:
//   - Debugf includes whole response bodies (customer emails and the like),
//     and Infof logs every request: both dropped.
//   - Errorf reports failures that are also returned as errors, which the
//     caller logs with more context (and for expected outcomes such as a 404
//     does not log at all): dropped to avoid double, context-free reports.
//   - Warnf reports stripe-go's own retries, which would otherwise be
//     invisible when the final attempt succeeds: kept, at warn level.
//
// None of these messages contain the API key; stripe-go logs method, host
// and path only.
type slogLogger struct {
	// logger is nil in production, meaning slog.Default() at the time of
	// logging, so a default installed after New still applies.
	logger *slog.Logger
}

func (l slogLogger) Debugf(string, ...any) {}
func (l slogLogger) Infof(string, ...any)  {}
func (l slogLogger) Errorf(string, ...any) {}

func (l slogLogger) Warnf(format string, v ...any) {
	lg := l.logger
	if lg == nil {
		lg = slog.Default()
	}
	lg.Warn(fmt.Sprintf(format, v...), slog.String("component", "stripe-go"))
}
