package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"fulfiller/internal/config"
	"fulfiller/internal/jobs"
	"fulfiller/internal/reconcile"
)

const followUsage = `usage: fulfiller follow <job_id> [--wait 30m]
  show the progress of a stock refill, reconciliation or deletion, or of a
  reconciliation with Stripe's events, until it finishes
(reads the settings of serve)
`

// cmdFollow waits again for a long operation an earlier command queued
// and stopped waiting for.
func cmdFollow(ctx context.Context, args []string, getenv func(string) string, logger *slog.Logger, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("follow", flag.ContinueOnError)
	fs.SetOutput(stderr)
	wait := fs.Duration("wait", 30*time.Minute, "how long to wait for the operation to finish")
	positional, err := parseInterleaved(fs, args)
	if err != nil {
		return errUsage
	}
	if len(positional) != 1 {
		fmt.Fprint(stderr, followUsage)
		return errUsage
	}
	id, err := strconv.ParseInt(positional[0], 10, 64)
	if err != nil || id <= 0 {
		return fmt.Errorf("follow: %q is not a job ID; the command that queued the operation printed it", positional[0])
	}
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return err
	}
	pool, rc, err := connectInserter(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer pool.Close()
	return followJob(ctx, rc, id, *wait, stdout)
}

// followed is a long operation the CLI can follow: its name on the
// progress line and how to tell its outcome.
type followed struct {
	label   string
	outcome func(w io.Writer, output json.RawMessage) error
}

// followedJob describes job, or says it is no long operation.
func followedJob(job *rivertype.JobRow) (followed, error) {
	var args struct {
		PriceID  string        `json:"price_id"`
		Lookback time.Duration `json:"lookback"`
	}
	if err := json.Unmarshal(job.EncodedArgs, &args); err != nil {
		return followed{}, fmt.Errorf("reading the arguments of job %d: %w", job.ID, err)
	}
	switch job.Kind {
	case jobs.RefillStockArgs{}.Kind():
		return followed{label: "stock refill " + args.PriceID, outcome: refillOutcome(args.PriceID)}, nil
	case jobs.ReconcileStockArgs{}.Kind():
		return followed{label: "stock reconcile", outcome: stockReconcileOutcome}, nil
	case jobs.DeleteStockArgs{}.Kind():
		return followed{label: "stock delete " + args.PriceID, outcome: stockDeleteOutcome}, nil
	case jobs.KindReconcileEvents:
		lookback := args.Lookback
		if lookback == 0 {
			lookback = reconcile.DefaultLookback
		}
		return followed{label: "reconcile --since " + hoursText(lookback), outcome: eventsReconcileOutcome(lookback)}, nil
	}
	return followed{}, fmt.Errorf("job %d is a %s job, not a stock refill, reconciliation or deletion, nor a reconciliation with Stripe's events; the River UI shows it", job.ID, job.Kind)
}

// followJob shows job id's progress on stdout until it finishes or wait
// passes, then its outcome. Stopped by ctx (Ctrl-C), it stops waiting
// only: the service's workers carry the operation on, and it says how to
// follow it again.
func followJob(ctx context.Context, rc *river.Client[pgx.Tx], id int64, wait time.Duration, stdout io.Writer) error {
	job, err := rc.JobGet(ctx, id)
	if err != nil {
		return fmt.Errorf("reading job %d: %w", id, err)
	}
	f, err := followedJob(job)
	if err != nil {
		return err
	}
	view := newProgressView(stdout, f.label)
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var output json.RawMessage
	err = jobs.WaitJob(waitCtx, rc, id, &output, view.show)
	view.end()
	switch {
	case err != nil && ctx.Err() != nil:
		fmt.Fprintf(stdout, "stopped waiting; the service goes on with job %d: follow it again with `fulfiller follow %d`\n", id, id)
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w; follow it again with `fulfiller follow %d`", f.label, err, id)
	case err != nil:
		return fmt.Errorf("%s: %w", f.label, err)
	}
	return f.outcome(stdout, output)
}

func refillOutcome(priceID string) func(io.Writer, json.RawMessage) error {
	return func(w io.Writer, output json.RawMessage) error {
		var out jobs.ProgressOutput
		if err := json.Unmarshal(output, &out); err != nil || out.Progress == nil {
			fmt.Fprintf(w, "done: the stock of %s is full\n", priceID)
			return nil //nolint:nilerr // a refill that had nothing to make records no count
		}
		fmt.Fprintf(w, "done: %d keys made; the stock of %s is full\n", out.Progress.Done, priceID)
		return nil
	}
}

func stockReconcileOutcome(w io.Writer, output json.RawMessage) error {
	var sum jobs.StockReconcileSummary
	if err := json.Unmarshal(output, &sum); err != nil {
		return fmt.Errorf("stock reconcile: reading the outcome: %w", err)
	}
	fmt.Fprintln(w, sum)
	if sum.Unusable+sum.NoPrice+sum.Strays > 0 {
		fmt.Fprintln(w, "the keys not adopted are in the service's log (masked), with what to do")
	}
	if sum.Retired > 0 {
		fmt.Fprintln(w, "the keys taken out of sale are in the service's log (masked): check them in the dashboard; `fulfiller stock delete <price_id>` deletes them")
	}
	return nil
}

func stockDeleteOutcome(w io.Writer, output json.RawMessage) error {
	var sum jobs.StockDeleteSummary
	if err := json.Unmarshal(output, &sum); err != nil {
		return fmt.Errorf("stock delete: reading the outcome: %w", err)
	}
	fmt.Fprintf(w, "done: %d keys taken out of sale, %d deleted in Luarmor, %d already gone; sold keys are kept\n",
		sum.Retired, sum.Deleted, sum.AlreadyGone)
	return nil
}

func eventsReconcileOutcome(lookback time.Duration) func(io.Writer, json.RawMessage) error {
	return func(w io.Writer, output json.RawMessage) error {
		var sum reconcile.Summary
		if err := json.Unmarshal(output, &sum); err != nil {
			return fmt.Errorf("reconcile: reading the outcome: %w", err)
		}
		fmt.Fprintf(w, "Stripe events of the last %s: %s\n", hoursText(lookback), sum)
		if sum.Ingested > 0 {
			fmt.Fprintln(w, "the service's workers handle the ingested events; check the webhook endpoint in Stripe's dashboard")
		}
		return nil
	}
}

// hoursText is a look-back as the operator gives it: "72h", or "90m0s"
// when it is no whole number of hours.
func hoursText(d time.Duration) string {
	if d%time.Hour == 0 {
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	}
	return d.String()
}
