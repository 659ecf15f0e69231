package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"fulfiller/internal/config"
	"fulfiller/internal/jobs"
	"fulfiller/internal/logging"
	"fulfiller/internal/mail"
	"fulfiller/internal/order"
	"fulfiller/internal/reconcile"
)

const ordersUsage = `usage:
  fulfiller orders show <checkout_session_id or ord_ reference>
  fulfiller orders retry <checkout_session_id or ord_ reference> [--reason R]
  fulfiller orders find --email E | --discord D | --key - | --key-file PATH
  (--key - reads the license key from stdin, --key-file from a file's first
  line; a key on the command line is refused: ps and the shell history
  would show it)
  fulfiller orders lift-revocation <checkout_session_id or ord_ reference> <issfr_...> [--wait 2m] [--reason R]
  fulfiller orders rotate-link <checkout_session_id or ord_ reference> [--reason R]
  fulfiller orders resend-email <checkout_session_id or ord_ reference> [--reason R]
(reads the settings of serve; --reason is kept in the audit log)
`

// openSupport connects to the service's database with the settings of
// serve and returns the support operations, inserting jobs only: the
// running service's workers carry them out within the fleet's budget.
func openSupport(ctx context.Context, getenv func(string) string, logger *slog.Logger) (*jobs.Support, func(), error) {
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return nil, nil, err
	}
	pool, rc, err := connectInserter(ctx, cfg, logger)
	if err != nil {
		return nil, nil, err
	}
	orders := &jobs.Orders{Pool: pool, River: rc, Logger: logger, HWIDResetCooldown: cfg.HWIDResetCooldown}
	support := &jobs.Support{Pool: pool, River: rc, Orders: orders, Logger: logger, HWIDResetCooldown: cfg.HWIDResetCooldown,
		Policy: cfg.Policy}
	if cfg.Mail.Enabled() {
		// Only to queue the keys email of a rotated link: the service's
		// workers send it.
		support.Mail = mail.NewSender(cfg.Mail)
	}
	return support, pool.Close, nil
}

// connectInserter connects to the service's database (DATABASE_URL) and
// returns a job client that inserts only: an operator's command records
// work, and the running service's workers do it within the fleet's budget.
// The caller closes the pool.
func connectInserter(ctx context.Context, cfg config.Config, logger *slog.Logger) (*pgxpool.Pool, *river.Client[pgx.Tx], error) {
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, nil, &config.Error{Name: "DATABASE_URL", Reason: "is not a valid PostgreSQL connection string"}
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = pool.Ping(pingCtx)
	cancel()
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("connecting to PostgreSQL (DATABASE_URL): %w", err)
	}
	// The reconciliation's worker is named so that `fulfiller reconcile`
	// may queue it; the service's workers carry it out.
	rc, err := jobs.NewClient(jobs.Deps{Pool: pool, Logger: logger}, jobs.Config{InsertOnly: true,
		Register: func(w *river.Workers) { river.AddWorker(w, &reconcile.Worker{}) }})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return pool, rc, nil
}

// parseInterleaved parses flags given before, between or after the
// positional arguments, and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

func cmdOrders(ctx context.Context, args []string, getenv func(string) string, logger *slog.Logger, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, ordersUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("orders "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var q jobs.OrderQuery
	var keyArg, keyFile string
	wait := new(time.Duration)
	reason := new(string)
	wantArgs := 1
	switch args[0] {
	case "find":
		fs.StringVar(&q.Email, "email", "", "the buyer's email address")
		fs.StringVar(&q.DiscordID, "discord", "", "the Discord ID given at checkout")
		fs.StringVar(&keyArg, "key", "", `"-": read a license key from stdin`)
		fs.StringVar(&keyFile, "key-file", "", "read a license key from this file's first line")
		wantArgs = 0
	case "lift-revocation":
		wait = fs.Duration("wait", 2*time.Minute, "how long to wait for the service to carry the lift out")
		reason = fs.String("reason", "", "why the revocation is lifted, for the audit log")
		wantArgs = 2
	case "rotate-link":
		reason = fs.String("reason", "", "why the order's links are revoked, for the log")
	case "retry":
		reason = fs.String("reason", "", "why the order is retried, for the audit log")
	case "resend-email":
		reason = fs.String("reason", "", "why the keys email is sent again, for the audit log")
	case "show":
	default:
		fmt.Fprint(stderr, ordersUsage)
		return errUsage
	}
	positional, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return errUsage
	}
	if len(positional) != wantArgs {
		fmt.Fprint(stderr, ordersUsage)
		return errUsage
	}
	switch {
	case keyArg != "" && keyArg != "-":
		return errKeyOnCommandLine("orders find", "fulfiller orders find --key -")
	case keyArg == "-" && keyFile != "":
		fmt.Fprint(stderr, ordersUsage)
		return errUsage
	case keyArg == "-" || keyFile != "":
		if q.UserKey, err = readKey("orders find", keyFile, stdin, stderr); err != nil {
			return err
		}
	}
	support, closeDB, err := openSupport(ctx, getenv, logger)
	if err != nil {
		return err
	}
	defer closeDB()
	switch args[0] {
	case "show":
		d, err := support.Order(ctx, positional[0])
		if err != nil {
			return supportError("orders show", err)
		}
		printOrder(stdout, d)
	case "retry":
		o, err := support.Retry(ctx, jobs.CLIActor(), positional[0], *reason)
		if err != nil {
			return supportError("orders retry", err)
		}
		fmt.Fprintf(stdout, "order %s is %s again: its fulfilment is queued for the service's workers\n",
			logging.OrderRef(o.CheckoutSessionID), o.Status)
	case "resend-email":
		return resendEmail(ctx, support, positional[0], *reason, stdout)
	case "lift-revocation":
		return liftRevocation(ctx, support, positional[0], positional[1], *reason, *wait, stdout)
	case "rotate-link":
		rot, err := support.RotateOrderAccess(ctx, jobs.ActorCLI, positional[0], *reason)
		if err != nil {
			return supportError("orders rotate-link", err)
		}
		fmt.Fprintf(stdout, "order %s: its Checkout Session ID and every earlier link no longer open it (access generation %d)\n",
			rot.OrderRef, rot.Generation)
		if rot.EmailDelivery != 0 {
			fmt.Fprintf(stdout, "the buyer is emailed a fresh link (keys email delivery %d)\n", rot.EmailDelivery)
		} else {
			fmt.Fprintf(stdout, "no email was queued: %s\n", rot.NoEmail)
		}
	case "find":
		orders, err := support.FindOrders(ctx, q)
		if err != nil {
			return supportError("orders find", err)
		}
		for _, o := range orders {
			fmt.Fprintln(stdout, orderLine(o))
		}
		if len(orders) == 0 {
			fmt.Fprintln(stdout, "no orders")
		}
	}
	return nil
}

// resendEmail queues a new keys email of a fulfilled order, which the
// service's workers send.
func resendEmail(ctx context.Context, support *jobs.Support, idOrRef, reason string, stdout io.Writer) error {
	const cmd = "orders resend-email"
	if support.Mail == nil {
		return fmt.Errorf("%s: keys by email is off: set SMTP_URL, MAIL_FROM and PUBLIC_BASE_URL", cmd)
	}
	delivery, err := support.ResendEmail(ctx, support.Mail, jobs.CLIActor(), idOrRef, reason)
	if err != nil {
		return supportError(cmd, err)
	}
	fmt.Fprintf(stdout, "keys email delivery %d queued; the service's workers send it\n", delivery)
	return nil
}

// liftRevocation lifts an early fraud warning's revocation of an order's
// payment, waits for the service's workers to restore the order and unban
// its keys, and prints the outcome.
func liftRevocation(ctx context.Context, support *jobs.Support, idOrRef, sourceID, reason string, wait time.Duration, stdout io.Writer) error {
	const cmd = "orders lift-revocation"
	q, err := support.LiftRevocation(ctx, jobs.CLIActor(), idOrRef, sourceID, reason)
	if err != nil {
		return supportError(cmd, err)
	}
	fmt.Fprintf(stdout, "revocation %s of order %s lifted; restoring the order is queued (job %d); waiting for the service\n",
		sourceID, q.OrderRef, q.JobID)
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	out, err := support.WaitLift(waitCtx, q)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if out.State != rivertype.JobStateCompleted {
		return fmt.Errorf("%s: not done (%s): %s", cmd, out.State, out.Error)
	}
	fmt.Fprintf(stdout, "done: order %s is %s\n", q.OrderRef, out.Order.Status)
	for _, k := range out.Order.Keys {
		key := "-"
		if k.Delivered() {
			key = logging.MaskKey(k.UserKey)
		}
		fmt.Fprintf(stdout, "  %s  %s  %s\n", k.Reference, k.Status, key)
	}
	return nil
}

// supportError names the command and keeps the domain's message, which
// says what to do.
func supportError(cmd string, err error) error {
	if code := order.ErrorCode(err); code != order.EINTERNAL {
		return fmt.Errorf("%s: %s", cmd, order.ErrorMessage(err))
	}
	return fmt.Errorf("%s: %w", cmd, err)
}

// orderLine is one order in a search's answer.
func orderLine(o *order.Order) string {
	delivered := 0
	for _, k := range o.Keys {
		if k.Delivered() {
			delivered++
		}
	}
	return fmt.Sprintf("%s  %s  %-9s  %s  %s  keys %d/%d", logging.OrderRef(o.CheckoutSessionID), o.CheckoutSessionID,
		o.Status, o.CreatedAt.UTC().Format(time.DateTime), orDash(o.CustomerEmail), delivered, len(o.Keys))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func unixTime(t *int64) string {
	switch {
	case t == nil:
		return "at first use"
	case *t == -1:
		return "never"
	}
	return time.Unix(*t, 0).UTC().Format(time.DateTime)
}

// printOrder prints an order's details for the operator's terminal (full
// keys included: the operator is trusted with them).
func printOrder(w io.Writer, d *jobs.OrderDetails) {
	o := d.Order
	fmt.Fprintf(w, "order %s  %s\n", d.Ref, o.CheckoutSessionID)
	fmt.Fprintf(w, "  status %s (session %s, payment %s, mode %s), created %s\n", o.Status, orDash(o.SessionStatus),
		orDash(o.PaymentStatus), orDash(o.Mode), o.CreatedAt.UTC().Format(time.DateTime))
	fmt.Fprintf(w, "  email %s  customer %s  discord %s\n", orDash(o.CustomerEmail), orDash(o.CustomerID), orDash(o.DiscordID))
	if o.PaymentIntentID != "" || o.SubscriptionID != "" {
		fmt.Fprintf(w, "  payment %s  subscription %s\n", orDash(o.PaymentIntentID), orDash(o.SubscriptionID))
	}
	if o.FailureCode != "" {
		fmt.Fprintf(w, "  failure %s: %s\n", o.FailureCode, o.FailureReason)
	}
	fmt.Fprintf(w, "keys (%d):\n", len(o.Keys))
	for _, k := range o.Keys {
		fmt.Fprintf(w, "  %s  %s  %s  %-11s  %s  expires %s  discord %s", k.Reference, k.PriceID, k.ProjectID, k.Status,
			orDash(k.UserKey), unixTime(k.AuthExpire), k.DiscordLink)
		if k.HWIDReset.Status != "" && k.HWIDReset.Status != order.HWIDResetNone {
			fmt.Fprintf(w, "  hwid reset %s", k.HWIDReset.Status)
		}
		fmt.Fprintln(w)
		if k.LastError != "" {
			fmt.Fprintf(w, "      last error: %s\n", k.LastError)
		}
	}
	fmt.Fprintf(w, "events (%d):\n", len(d.Events))
	for _, e := range d.Events {
		fmt.Fprintf(w, "  %s  %s  %s  %s\n", e.ReceivedAt.UTC().Format(time.DateTime), e.Type, e.ID, e.ObjectID)
	}
	fmt.Fprintf(w, "emails (%d):\n", len(d.Emails))
	for _, e := range d.Emails {
		fmt.Fprintf(w, "  delivery %d  %s  attempts %d  %s\n", e.Delivery, e.Status, e.Attempts, e.LastError)
	}
	fmt.Fprintf(w, "revocations (%d):\n", len(d.Revocations))
	for _, r := range d.Revocations {
		fmt.Fprintf(w, "  %s %s  %s (%s)  %s\n", r.Source, r.SourceID, r.Action, r.Reason, r.Status)
	}
	keyOf := map[int64]string{}
	for _, k := range o.Keys {
		keyOf[k.ID] = k.UserKey
	}
	fmt.Fprintf(w, "reissues (%d):\n", len(d.Reissues))
	for _, r := range d.Reissues {
		fmt.Fprintf(w, "  %s -> %s  %s  by %s  %s\n", orDash(keyOf[r.OldKeyID]), orDash(keyOf[r.NewKeyID]), r.Status,
			r.RequestedBy, strings.TrimSpace(r.Message))
	}
}
