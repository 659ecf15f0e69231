// Command bench measures the fulfiller on this machine and prints a short
// report:
//
//  1. Webhook intake: verified events per second and p50/p99 latency at a
//     fixed concurrency, for the real service (app.Main) receiving unpaid
//     sessions (intake only: the order is recorded, no fulfilment follows)
//     and paid ones (River workers fulfil while events keep coming), against
//     a baseline handler that stores the raw body in one INSERT. The
//     service and the baseline run back to back in -rounds rounds of
//     alternating order, compared by the median round: one pair of windows
//     on a shared machine swings by a third from run to run.
//  2. Webhook to key: with Luarmor answering in about 50 ms, the time from
//     sending a purchase's webhook until the order API shows its key.
//
// Other scenarios: -scenario budget drains backlogs through the fleet-wide
// Luarmor budget with three replicas; -scenario fairness times one-unit
// orders placed behind a 500-unit order at the real 60/1m budget; -scenario
// stock times a spike of one-unit purchases with a key stock and without;
// -scenario burst times a product drop (purchases whose webhooks arrive
// within one second, stocked and made to order) with PostgreSQL's fsync on
// (`make bench-burst`).
// -scenario scale seeds years of orders (-orders) and times every look-up
// and periodic query, intake and the bytes each order costs.
//
// Run it with `make bench`, which starts a throwaway PostgreSQL and sets
// DATABASE_URL; every database the run creates is dropped at the end.
//
//	make bench BENCH_FLAGS='-duration 20s -concurrency 32'
//	make bench BENCH_FLAGS='-json'
//	make bench BENCH_FLAGS='-rounds 1 -cpuprofile /tmp/bench' && go tool pprof -top /tmp/bench-service_unpaid.pprof
//	make bench-burst BENCH_FLAGS='-cpuprofile /tmp/bench' && go tool pprof -top /tmp/bench-burst-burst_stocked.pprof
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/config"
	"fulfiller/internal/jobs"
)

type options struct {
	concurrency int
	rounds      int
	warmup      time.Duration
	duration    time.Duration
	purchases   int
	luarmor     time.Duration
	poll        time.Duration
	jsonOut     bool
	cpuProfile  string
	scenario    string
	budgetKeys  string
	budgetRate  string
	budgetLat   time.Duration
	fairRate    string
	fairUnits   int
	fairSmall   int
	fairEvery   time.Duration
	stockRate   string
	stockBuys   int
	stockSpread time.Duration
	stockDead   time.Duration
	stockFill   time.Duration
	burst       burstOptions
	burstFsync  bool // whether the burst may run with fsync off
	scaleOrders int
	scaleN      int
	scaleRuns   int
	scaleBudget time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.concurrency, "concurrency", 16, "concurrent webhook senders in the intake phases")
	flag.IntVar(&o.rounds, "rounds", 3, "intake rounds, each the service and the baseline back to back in alternating order; the report compares them by the median round")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each intake phase")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each intake phase")
	flag.IntVar(&o.purchases, "purchases", 100, "purchases in the webhook-to-key phase (0 skips it)")
	flag.DurationVar(&o.luarmor, "luarmor-latency", 50*time.Millisecond, "Luarmor sandbox answer time in the webhook-to-key phase and the fairness, stock and burst scenarios")
	flag.DurationVar(&o.poll, "poll", 2*time.Millisecond, "order API polling interval in the webhook-to-key phase")
	flag.BoolVar(&o.jsonOut, "json", false, "print the report as JSON instead of Markdown")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of each intake phase's timed window to `PREFIX`-<phase>.pprof, and of each burst's to PREFIX-burst-<run>.pprof")
	flag.StringVar(&o.scenario, "scenario", "intake", "what to measure: intake (intake and webhook-to-key), budget (the fleet-wide Luarmor budget), fairness (small orders behind a big one), stock (a sales spike with a key stock and without), burst (a product drop, stocked and made to order, fsync on), scale (years of orders) or all")
	flag.StringVar(&o.budgetKeys, "budget-keys", "150,600", "comma-separated backlog sizes to drain in the budget scenario")
	flag.StringVar(&o.budgetRate, "budget-rate", "30/3s", "the budget in the budget scenario, COUNT/DURATION, enforced by the sandbox too")
	flag.DurationVar(&o.budgetLat, "budget-latency", 50*time.Millisecond, "Luarmor sandbox answer time in the budget scenario")
	flag.StringVar(&o.fairRate, "fairness-rate", "60/1m", "the budget in the fairness scenario, COUNT/DURATION (LUARMOR_RATE_LIMIT), enforced by the sandbox too")
	flag.IntVar(&o.fairUnits, "fairness-units", 500, "units of the big order in the fairness scenario (MAX_UNITS_PER_ORDER is set to it)")
	flag.IntVar(&o.fairSmall, "fairness-small", 5, "one-unit orders placed behind the big one in the fairness scenario")
	flag.DurationVar(&o.fairEvery, "fairness-every", 20*time.Second, "time between small orders once the budget's first window is spent, in the fairness scenario")
	flag.StringVar(&o.stockRate, "stock-rate", "60/6s", "the budget in the stock scenario's spikes, COUNT/DURATION, enforced by the sandbox too (60/6s is 60/1m ten times faster)")
	flag.IntVar(&o.stockBuys, "stock-purchases", 500, "one-unit purchases in the stock scenario's spike, and the stock of the stocked run")
	flag.DurationVar(&o.stockSpread, "stock-spread", 10*time.Second, "the stock scenario's purchases arrive evenly over this time")
	flag.DurationVar(&o.stockDead, "stock-deadline", 2*time.Minute, "in the stock scenario, an order with no key this long after the first webhook counts as not delivered")
	flag.DurationVar(&o.stockFill, "stock-fill-timeout", 3*time.Minute, "longest the stock scenario waits for refill_stock to fill the stock")
	flag.IntVar(&o.burst.purchases, "burst-purchases", 100, "one-unit purchases in each burst of the burst scenario, and the stock of its stocked runs")
	flag.DurationVar(&o.burst.spread, "burst-spread", time.Second, "the burst scenario's webhooks are sent evenly over this time; 0 sends them all at once")
	flag.IntVar(&o.burst.idle, "burst-idle", 10, "stocked purchases one at a time at idle in the burst scenario")
	flag.DurationVar(&o.burst.timeout, "burst-timeout", 30*time.Second, "in the burst scenario, a key not seen this long after its webhook fails the run")
	flag.DurationVar(&o.burst.fillTimeout, "burst-fill-timeout", 2*time.Minute, "longest the burst scenario waits for refill_stock to fill the stock")
	flag.IntVar(&o.burst.statements, "burst-statements", 0, "in the burst scenario, list this many of each run's most executed statements (needs pg_stat_statements: make bench-burst loads it)")
	flag.BoolVar(&o.burstFsync, "burst-fsync-off", false, "let the burst scenario run on a PostgreSQL with fsync off (its figures then leave out what a durable commit costs)")
	flag.IntVar(&o.scaleOrders, "orders", 1_000_000, "orders of the seeded history in the scale scenario (at least 10000)")
	flag.IntVar(&o.scaleN, "scale-samples", 200, "timed requests per look-up in the scale scenario")
	flag.IntVar(&o.scaleRuns, "scale-runs", 50, "timed runs per periodic query in the scale scenario")
	flag.DurationVar(&o.scaleBudget, "scale-row-budget", 15*time.Second, "longest time one row of the scale scenario runs; a slower row stops early with fewer samples")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}
	if o.concurrency < 1 || o.rounds < 1 || o.duration <= 0 || o.warmup < 0 || o.purchases < 0 || o.poll <= 0 {
		fmt.Fprintln(os.Stderr, "bench: -concurrency, -rounds and -duration must be positive, -warmup and -purchases not negative, -poll positive")
		os.Exit(2)
	}
	if o.fairUnits < 1 || o.fairUnits > 10000 || o.fairSmall < 1 || o.fairEvery < 0 {
		fmt.Fprintln(os.Stderr, "bench: -fairness-units must be 1 to 10000 (MAX_UNITS_PER_ORDER's range), -fairness-small positive, -fairness-every not negative")
		os.Exit(2)
	}

	if o.stockBuys < 1 || o.stockBuys > 10000 || o.stockSpread <= 0 || o.stockDead <= o.stockSpread || o.stockFill <= 0 {
		fmt.Fprintln(os.Stderr, "bench: -stock-purchases must be 1 to 10000 (the largest stock), -stock-spread and -stock-fill-timeout positive, -stock-deadline longer than -stock-spread")
		os.Exit(2)
	}

	if o.burst.purchases < 1 || o.burst.purchases > 10000 || o.burst.spread < 0 || o.burst.idle < 1 || o.burst.timeout <= 0 || o.burst.fillTimeout <= 0 {
		fmt.Fprintln(os.Stderr, "bench: -burst-purchases must be 1 to 10000 (the largest stock), -burst-spread not negative, -burst-idle, -burst-timeout and -burst-fill-timeout positive")
		os.Exit(2)
	}
	o.burst.latency = o.luarmor
	o.burst.cpuProfile = o.cpuProfile

	if o.scaleOrders < scaleCompareOrders || o.scaleN < 1 || o.scaleRuns < 1 || o.scaleBudget <= 0 {
		fmt.Fprintf(os.Stderr, "bench: -orders must be at least %d, -scale-samples, -scale-runs and -scale-row-budget positive\n", scaleCompareOrders)
		os.Exit(2)
	}

	switch o.scenario {
	case "intake", "budget", "fairness", "stock", "burst", "scale", "all":
	default:
		fmt.Fprintf(os.Stderr, "bench: -scenario %q must be intake, budget, fairness, stock, burst, scale or all\n", o.scenario)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

// run measures every phase in turn and prints the report. Phases run one
// after the other, never overlapping, each against its own database, so no
// phase pays for another's work (not even PostgreSQL's autovacuum of it: a
// phase's database is dropped as soon as the phase ends).
func run(ctx context.Context, o options, stdout, stderr io.Writer) (err error) {
	progress := func(format string, args ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", args...) }
	dbs, err := newDatabases()
	if err != nil {
		return err
	}
	defer func() {
		if dropErr := dbs.dropAll(); dropErr != nil {
			err = errors.Join(err, dropErr)
		}
	}()

	rep := &Report{Machine: Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, GoVersion: runtime.Version()}}
	if rep.Machine.PostgreSQL, err = dbs.serverVersion(ctx); err != nil {
		return err
	}
	if rep.Machine.PGSettings, err = pgSettings(ctx, dbs); err != nil {
		return err
	}
	burst := o.scenario == "burst" || o.scenario == "all"
	if burst && !strings.Contains(rep.Machine.PGSettings, "fsync=on") && !o.burstFsync {
		return fmt.Errorf("the burst scenario measures commits as production pays them, but PostgreSQL runs with %s: "+
			"run `make bench-burst` (scripts/with-postgres --durable), or pass -burst-fsync-off to measure anyway", rep.Machine.PGSettings)
	}
	progress("PostgreSQL %s; migrating a template database", rep.Machine.PostgreSQL)
	tmpl, err := dbs.migratedTemplate(ctx)
	if err != nil {
		return err
	}

	// The service logs warnings and errors only: at info it would log a
	// line per event, which measures the log sink rather than the service.
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if o.scenario == "intake" || o.scenario == "all" {
		if err := intakeScenario(ctx, o, dbs, tmpl, logger, progress, rep); err != nil {
			return err
		}
	}
	if o.scenario == "budget" || o.scenario == "all" {
		count, window, err := config.ParseRate(o.budgetRate)
		if err != nil {
			return fmt.Errorf("-budget-rate: %w", err)
		}
		for _, field := range strings.Split(o.budgetKeys, ",") {
			keys, err := strconv.Atoi(strings.TrimSpace(field))
			if err != nil || keys < 1 {
				return fmt.Errorf("-budget-keys: %q is not a positive number", field)
			}
			progress("budget: draining %d key creations with 3 replicas at %s", keys, o.budgetRate)
			row, err := budgetDrain(ctx, dbs, tmpl, budgetOptions{keys: keys, replicas: 3, count: count, window: window, latency: o.budgetLat})
			if err != nil {
				return fmt.Errorf("budget, %d keys: %w", keys, err)
			}
			rep.Budget = append(rep.Budget, row)
		}
	}
	if o.scenario == "fairness" || o.scenario == "all" {
		count, window, err := config.ParseRate(o.fairRate)
		if err != nil {
			return fmt.Errorf("-fairness-rate: %w", err)
		}
		progress("fairness: a %d-unit order and %d one-unit orders behind it at %s", o.fairUnits, o.fairSmall, o.fairRate)
		fo := fairnessOptions{rate: o.fairRate, count: count, window: window, units: o.fairUnits, small: o.fairSmall,
			every: o.fairEvery, latency: o.luarmor, poll: fairnessPoll}
		if rep.Fairness, err = fairnessRun(ctx, dbs, tmpl, newSender(1), logger, fo, progress); err != nil {
			return fmt.Errorf("fairness: %w", err)
		}
	}

	if o.scenario == "stock" || o.scenario == "all" {
		count, window, err := config.ParseRate(o.stockRate)
		if err != nil {
			return fmt.Errorf("-stock-rate: %w", err)
		}
		so := stockOptions{rate: o.stockRate, count: count, window: window, purchases: o.stockBuys, spread: o.stockSpread,
			latency: o.luarmor, deadline: o.stockDead, fillTimeout: o.stockFill}
		if rep.Stock, err = stockScenario(ctx, dbs, tmpl, logger, so, progress); err != nil {
			return fmt.Errorf("stock: %w", err)
		}
	}

	if burst {
		if rep.Burst, err = burstScenario(ctx, dbs, tmpl, logger, o.burst, progress); err != nil {
			return fmt.Errorf("burst: %w", err)
		}
	}

	if o.scenario == "scale" || o.scenario == "all" {
		so := scaleOptions{orders: o.scaleOrders, samples: o.scaleN, runs: o.scaleRuns, rowBudget: o.scaleBudget,
			load: loadOptions{concurrency: o.concurrency, warmup: o.warmup, duration: o.duration}}
		if rep.Scale, err = scaleScenario(ctx, so, dbs, tmpl, logger, progress); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
	}

	if o.jsonOut {
		err = writeJSON(stdout, rep)
	} else {
		err = writeText(stdout, rep)
	}
	if err == nil && rep.Burst != nil && len(rep.Burst.Failures) > 0 {
		err = fmt.Errorf("burst: %d correctness checks failed, listed at the end of the report: %s", len(rep.Burst.Failures), rep.Burst.Failures[0])
	}
	return err
}

// intakeScenario measures webhook intake against the baseline, and the
// time from webhook to key.
func intakeScenario(ctx context.Context, o options, dbs *databases, tmpl string, logger *slog.Logger,
	progress func(string, ...any), rep *Report) error {
	client := newSender(o.concurrency)
	load := func(phase string) loadOptions {
		lo := loadOptions{concurrency: o.concurrency, warmup: o.warmup, duration: o.duration}
		if o.cpuProfile != "" {
			lo.cpuProfile = o.cpuProfile + "-" + phase + ".pprof"
		}
		return lo
	}
	rep.Intake = IntakeReport{Concurrency: o.concurrency, WarmupS: o.warmup.Seconds(), DurationS: o.duration.Seconds()}

	// Rounds of the service and the baseline back to back, in alternating
	// order (service first, then baseline first, ...), so what one phase
	// leaves the next (a checkpoint, the page cache, a busy neighbour)
	// weighs on both alike; the report compares them by the median round.
	// The service runs first: the baseline copies its pool size.
	rounds := make([]intakeRound, o.rounds)
	for i := range rounds {
		r := &rounds[i]
		phase := func(name string) loadOptions {
			if o.rounds > 1 {
				name = fmt.Sprintf("%s-r%d", name, i+1)
			}
			return load(name)
		}
		service := func() error {
			progress("intake: round %d of %d, service, unpaid sessions (%s)", i+1, o.rounds, o.warmup+o.duration)
			var poolSize int32
			var err error
			r.service, poolSize, err = serviceIntake(ctx, dbs, tmpl, client, logger, "unpaid", false, phase("service_unpaid"))
			if err != nil {
				return fmt.Errorf("intake, service with unpaid sessions: %w", err)
			}
			rep.Intake.PoolSize = poolSize
			return nil
		}
		baseline := func() error {
			progress("intake: round %d of %d, baseline (%s)", i+1, o.rounds, o.warmup+o.duration)
			var err error
			if r.baseline, err = baselineIntake(ctx, dbs, client, rep.Intake.PoolSize, phase("baseline")); err != nil {
				return fmt.Errorf("intake, baseline: %w", err)
			}
			return nil
		}
		first, second := service, baseline
		if i%2 == 1 {
			first, second = baseline, service
		}
		if err := first(); err != nil {
			return err
		}
		if err := second(); err != nil {
			return err
		}
	}
	base, unpaid := rep.Intake.addRounds(rounds)

	// The workers' pace on a backlog, on a run of its own after the rounds,
	// so the drain's load falls on no measured window.
	progress("intake: a backlog (%s) for the workers to drain", o.warmup+o.duration)
	backlog, _, err := serviceIntake(ctx, dbs, tmpl, client, logger, "unpaid", true, load("service_drain"))
	if err != nil {
		return fmt.Errorf("intake, a backlog to drain: %w", err)
	}
	rep.Intake.check("backlog to drain", backlog)
	rep.Intake.Processing = backlog.processing

	progress("intake: service, paid sessions (%s)", o.warmup+o.duration)
	paid, _, err := serviceIntake(ctx, dbs, tmpl, client, logger, "paid", false, load("service_paid"))
	if err != nil {
		return fmt.Errorf("intake, service with paid sessions: %w", err)
	}
	// The yardstick first in the table.
	rep.Intake.add(base)
	rep.Intake.add(unpaid)
	rep.Intake.add(paid)
	rep.Intake.compare()

	if o.purchases > 0 {
		progress("webhook to key: %d purchases, Luarmor answering in %s", o.purchases, o.luarmor)
		lo := latencyOptions{purchases: o.purchases, luarmorLatency: o.luarmor, poll: o.poll, timeout: 30 * time.Second}
		var err error
		if rep.Latency, err = purchaseLatency(ctx, dbs, tmpl, client, logger, lo); err != nil {
			return fmt.Errorf("webhook to key: %w", err)
		}
	}

	return nil
}

// serviceIntake measures the real service on a fresh database, with
// sessions of the given payment status, and returns its row and pool size.
// With drain, the events an unpaid window recorded are then acted on and
// the time that took is the row's processing.
func serviceIntake(ctx context.Context, dbs *databases, tmpl string, client *http.Client, logger *slog.Logger,
	paymentStatus string, drain bool, lo loadOptions) (row IntakeRow, poolSize int32, err error) {
	name, dbURL, err := dbs.create(ctx, tmpl)
	if err != nil {
		return row, 0, err
	}
	defer func() { err = errors.Join(err, dbs.drop(context.Background(), name)) }()
	svc, err := startService(ctx, dbURL, logger, serviceOptions{})
	if err != nil {
		return row, 0, err
	}
	defer svc.close()

	maker, err := newEventMaker(paymentStatus, benchItems)
	if err != nil {
		return row, 0, err
	}
	var before func(purchase)
	if paymentStatus == "paid" {
		// The workers read every paid session back from the Stripe fake.
		before = func(p purchase) { svc.stripe.PutSession(p.session) }
	}
	if paymentStatus != "paid" {
		// Intake alone: what the endpoint does before answering (verify,
		// record, enqueue). Acting on the events is held back with River's
		// own queue pause, then measured on its own once the window ends.
		if err := svc.main.River.QueuePause(ctx, jobs.QueueEvents, nil); err != nil {
			return row, 0, fmt.Errorf("pausing event processing: %w", err)
		}
	}
	res, err := runLoad(ctx, client, svc.webhookURL(), maker, before, lo)
	if err != nil {
		return row, 0, err
	}
	var processed *Drain
	if paymentStatus != "paid" && drain {
		if processed, err = drainEvents(ctx, svc); err != nil {
			return row, 0, err
		}
	}

	var stored, fulfilled int
	err = svc.main.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM stripe_events),
		(SELECT count(*) FROM orders WHERE status = 'fulfilled')`).Scan(&stored, &fulfilled)
	if err != nil {
		return row, 0, fmt.Errorf("counting stored events: %w", err)
	}
	if paymentStatus == "paid" {
		row = newIntakeRow("service_paid", "service, paid sessions (fulfilment running)", res, stored)
		row.FulfilledByEnd = &fulfilled
	} else {
		row = newIntakeRow("service_unpaid", "service, intake only (event processing paused)", res, stored)
		row.processing = processed
	}
	return row, svc.poolSize(), nil
}

// baselineIntake measures the baseline handler on a fresh, empty database.
func baselineIntake(ctx context.Context, dbs *databases, client *http.Client, poolSize int32, lo loadOptions) (row IntakeRow, err error) {
	name, dbURL, err := dbs.create(ctx, "")
	if err != nil {
		return row, err
	}
	defer func() { err = errors.Join(err, dbs.drop(context.Background(), name)) }()
	b, err := startBaseline(ctx, dbURL, poolSize)
	if err != nil {
		return row, err
	}
	defer b.close()

	// The baseline receives the same events as the service, signed the same
	// way; it just ignores the signature.
	maker, err := newEventMaker("unpaid", benchItems)
	if err != nil {
		return row, err
	}
	res, err := runLoad(ctx, client, b.webhookURL(), maker, nil, lo)
	if err != nil {
		return row, err
	}
	var stored int
	if err := b.pool.QueryRow(ctx, "SELECT count(*) FROM baseline_events").Scan(&stored); err != nil {
		return row, fmt.Errorf("counting stored events: %w", err)
	}
	return newIntakeRow("baseline", "baseline: read body, one INSERT", res, stored), nil
}

// purchaseLatency measures webhook-to-key times on a fresh service.
func purchaseLatency(ctx context.Context, dbs *databases, tmpl string, client *http.Client, logger *slog.Logger, lo latencyOptions) (lr *LatencyReport, err error) {
	name, dbURL, err := dbs.create(ctx, tmpl)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, dbs.drop(context.Background(), name)) }()
	svc, err := startService(ctx, dbURL, logger, serviceOptions{})
	if err != nil {
		return nil, err
	}
	defer svc.close()
	res, err := runPurchases(ctx, client, svc, lo)
	if err != nil {
		return nil, err
	}
	return newLatencyReport(res, lo), nil
}

// pgSettings reports the durability settings, which decide what a commit
// costs: scripts/with-postgres turns fsync and synchronous_commit off.
func pgSettings(ctx context.Context, dbs *databases) (string, error) {
	var fsync, syncCommit string
	err := dbs.admin(ctx, func(c *pgx.Conn) error {
		if err := c.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil {
			return err
		}
		return c.QueryRow(ctx, "SHOW synchronous_commit").Scan(&syncCommit)
	})
	if err != nil {
		return "", fmt.Errorf("reading PostgreSQL settings: %w", err)
	}
	return "fsync=" + fsync + ", synchronous_commit=" + syncCommit, nil
}

// drainEvents resumes event processing after an intake window and times
// how fast the workers act on the recorded backlog.
func drainEvents(ctx context.Context, svc *service) (*Drain, error) {
	left := func() (int, error) {
		var n int
		err := svc.main.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'handle_events' AND state <> 'completed'`).Scan(&n)
		return n, err
	}
	var backlog int
	if err := svc.main.Pool.QueryRow(ctx, `SELECT count(*) FROM stripe_events WHERE handled`).Scan(&backlog); err != nil {
		return nil, fmt.Errorf("counting recorded events: %w", err)
	}
	start := time.Now()
	if err := svc.main.River.QueueResume(ctx, jobs.QueueEvents, nil); err != nil {
		return nil, fmt.Errorf("resuming event processing: %w", err)
	}
	for {
		n, err := left()
		if err != nil {
			return nil, fmt.Errorf("counting queued event jobs: %w", err)
		}
		if n == 0 {
			break
		}
		if time.Since(start) > 5*time.Minute {
			return nil, fmt.Errorf("event backlog not drained after 5 minutes: %d jobs left", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(start)
	return &Drain{Events: backlog, Seconds: took.Seconds(), PerSecond: float64(backlog) / took.Seconds()}, nil
}
