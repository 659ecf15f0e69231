package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"fulfiller/internal/config"
	"fulfiller/internal/jobs"
	"fulfiller/internal/reconcile"
)

// cmdReconcile queues, for the running service, a reconciliation that
// records the Stripe events of the handled types created in the last
// --since that never reached the webhook and queues their handling, as
// the periodic job does; then it follows its progress.
func cmdReconcile(ctx context.Context, args []string, getenv func(string) string, logger *slog.Logger, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	since := fs.String("since", "72h", "how far back to look, like 72h or 3d; at most 30d, as long as Stripe keeps events")
	wait := fs.Duration("wait", 10*time.Minute, "how long to wait for the service to list the events")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: fulfiller reconcile [--since 72h] [--wait 10m] (reads the settings of serve; the running service lists the events)")
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
	// Inserts only: the service's workers list Stripe's events, with its
	// key, and act on what they record.
	pool, rc, err := connectInserter(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer pool.Close()
	res, err := rc.Insert(ctx, reconcile.Args{Lookback: lookback, Actor: jobs.CLIActor()}, nil)
	if err != nil {
		return fmt.Errorf("reconcile: queueing the reconciliation: %w", err)
	}
	fmt.Fprintf(stdout, "reconciliation with Stripe's events of the last %s queued (job %d); waiting for the service\n", hoursText(lookback), res.Job.ID)
	return followJob(ctx, rc, res.Job.ID, *wait, stdout)
}
