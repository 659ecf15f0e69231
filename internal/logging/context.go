package logging

import (
	"context"
	"log/slog"
	"slices"
)

type contextAttrsKey struct{}

// WithAttrs returns a context whose log lines carry attrs, through a
// handler wrapped by ContextHandler: a job's ID and kind are set once where
// the job starts, and every line logged with its context names them.
func WithAttrs(ctx context.Context, attrs ...slog.Attr) context.Context {
	prev, _ := ctx.Value(contextAttrsKey{}).([]slog.Attr)
	return context.WithValue(ctx, contextAttrsKey{}, append(slices.Clip(prev), attrs...))
}

// ContextHandler wraps h so that each record carries the attributes of
// its context (WithAttrs). Wrapping twice is wrapping once.
func ContextHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(contextHandler); ok {
		return h
	}
	return contextHandler{h}
}

type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if attrs, ok := ctx.Value(contextAttrsKey{}).([]slog.Attr); ok && len(attrs) > 0 {
		r = r.Clone()
		r.AddAttrs(attrs...)
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}
