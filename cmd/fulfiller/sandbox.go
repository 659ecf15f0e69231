package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"fulfiller/internal/config"
	"fulfiller/internal/luarmor/sandbox"
)

func cmdLuarmorSandbox(ctx context.Context, args []string, getenv func(string) string, logger *slog.Logger, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("luarmor-sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8091", "address to listen on")
	apiKey := fs.String("api-key", getenv("LUARMOR_API_KEY"), "accepted API key (default $LUARMOR_API_KEY, else \"sandbox\")")
	projects := fs.String("projects", "", "comma-separated known project IDs (default: any project ID is accepted)")
	limit := fs.String("limit", "60/1m", "request budget COUNT/DURATION, e.g. 30/30s")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	count, window, err := config.ParseRate(*limit)
	if err != nil {
		return fmt.Errorf("--limit: %w", err)
	}
	opts := sandbox.Options{APIKey: *apiKey, Limit: count, Window: window, Logger: logger}
	if *projects != "" {
		opts.Projects = strings.Split(*projects, ",")
	}
	sb := sandbox.New(opts)
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *addr, err)
	}
	fmt.Fprintf(stdout, "Luarmor sandbox on http://%s (budget %d per %s)\n", l.Addr(), count, window)
	return serveUntilDone(ctx, l, sb)
}

// serveUntilDone serves h on l until ctx ends.
func serveUntilDone(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
