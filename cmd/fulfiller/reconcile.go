package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"fulfiller/internal/config"
	"fulfiller/internal/reconcile"
	"fulfiller/internal/stripeapi"
)

// cmdReconcile records the Stripe events of the handled types created in
// the last --since that never reached the webhook, and queues their
// handling for the running service, as the periodic job does.
func cmdReconcile(ctx context.Context, args []string, getenv func(string) string, logger *slog.Logger, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	since := fs.String("since", "72h", "how far back to look, like 72h or 3d; at most 30d, as long as Stripe keeps events")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: fulfiller reconcile [--since 72h] (reads the settings of serve)")
		return errUsage
	}
	lookback, err := config.ParseDuration(*since)
	if err != nil {
		return fmt.Errorf("reconcile --since: %w", err)
	}
	if err := reconcile.CheckLookback(lookback); err != nil {
		return fmt.Errorf("reconcile --since %s: %w", *since, err)
	}
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return err
	}
	// Inserts only: the service's workers act on what is recorded.
	pool, rc, err := connectInserter(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer pool.Close()
	rec := &reconcile.Reconciler{
		Pool:   pool,
		Stripe: stripeapi.New(cfg.StripeAPIKey, cfg.StripeAPIBase, &http.Client{Timeout: 30 * time.Second}),
		Logger: logger,
	}
	sum, err := rec.Run(ctx, rc, lookback)
	fmt.Fprintf(stdout, "Stripe events of the last %s: %s\n", *since, sum)
	if err != nil {
		return err
	}
	if sum.Ingested > 0 {
		fmt.Fprintln(stdout, "the service's workers handle the ingested events; check the webhook endpoint in Stripe's dashboard")
	}
	return nil
}
