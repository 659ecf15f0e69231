// Command fulfiller turns Stripe payments into Luarmor license keys.
//
//	fulfiller serve [--migrate]   run the HTTP server and the job workers
//	fulfiller migrate             apply the database schema (idempotent)
//	fulfiller dev                 local run: sandboxes for Luarmor and Stripe, then serve --migrate
//	fulfiller simulate checkout   send a signed checkout event to a running service, print the keys
//	fulfiller doctor              check that the configuration can sell, one line per check
//	fulfiller reconcile           record the Stripe events that never reached the webhook
//	fulfiller luarmor-sandbox     run the Luarmor sandbox on its own
//	fulfiller orders, keys        support: show, find and retry orders, lift a fraud warning; act on keys
//	fulfiller stock               the key stock: levels, refill, reconciliation, deleting an orphan price's keys
//	fulfiller follow              the progress of a long operation queued by stock or reconcile
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"fulfiller/internal/config"
	"fulfiller/internal/logging"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runWith(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "fulfiller:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

const usage = `usage: fulfiller <command> [flags]

commands:
  serve [--migrate]     run the HTTP server and the job workers
  migrate               apply the database schema (River's and the service's)
  dev                   run locally against the Luarmor sandbox and a Stripe stand-in
  simulate checkout     send a signed checkout event to a running service and print the keys
  simulate renewal|dispute|dispute-won|refund|cancel --session cs_...
                        play what follows a simulated checkout and print what became of its keys
  doctor                check, before the first sale, that the configuration can sell
  reconcile [--since 72h]
                        record the Stripe events (at most 30 days old) that never reached the webhook
  luarmor-sandbox       run the Luarmor sandbox (an in-memory Luarmor API)
  orders show|retry|find|lift-revocation
                        support: an order's details, retry a failed order, find orders,
                        lift an early fraud warning's revocation
  keys blacklist|unban|reset-hwid|revoke|reissue|set-discord
                        support: act on a key through the running service
                        (the key on stdin with -, or --key-file PATH)
  stock list|refill|reconcile|delete
                        the key stock: levels per price, fill a price's stock now, adopt keys
                        the database lost, delete the keys of a price no longer stocked
  follow <job_id>       show the progress of a stock refill, reconciliation or deletion, or of
                        reconcile, again after Ctrl-C stopped the waiting

Settings come from the environment; see docs/operating.md (Configuration).
`

// run runs a command with nothing on its standard input.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWith(ctx, args, getenv, strings.NewReader(""), stdout, stderr)
}

// runWith runs a command; stdin is where support commands read a license
// key given as "-".
func runWith(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	logSettings, err := config.Logging(commandLogDefaults(args[0], getenv))
	if err != nil {
		return err
	}
	logger := logging.New(stderr, logSettings.Format, logSettings.Level)
	slog.SetDefault(logger)
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], getenv, logger, stderr)
	case "migrate":
		return cmdMigrate(ctx, args[1:], getenv, logger, stderr)
	case "dev":
		return cmdDev(ctx, args[1:], getenv, logger, stdout, stderr)
	case "simulate":
		return cmdSimulate(ctx, args[1:], getenv, stdout, stderr)
	case "doctor":
		return cmdDoctor(ctx, args[1:], getenv, stdout, stderr)
	case "reconcile":
		return cmdReconcile(ctx, args[1:], getenv, logger, stdout, stderr)
	case "orders":
		return cmdOrders(ctx, args[1:], getenv, logger, stdin, stdout, stderr)
	case "keys":
		return cmdKeys(ctx, args[1:], getenv, logger, stdin, stdout, stderr)
	case "stock":
		return cmdStock(ctx, args[1:], getenv, logger, stdout, stderr)
	case "follow":
		return cmdFollow(ctx, args[1:], getenv, logger, stdout, stderr)
	case "luarmor-sandbox":
		return cmdLuarmorSandbox(ctx, args[1:], getenv, logger, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "fulfiller: unknown command %q\n\n%s", args[0], usage)
		return errUsage
	}
}

// commandLogDefaults is getenv with the log defaults of command: the
// service (serve, migrate) logs JSON at info for a log collector; a
// person at a terminal reads the rest. dev logs text, and the one-shot
// commands log text at warn, so their own output is not buried in the
// lines their queries log (the audit log records what support did).
// LOG_FORMAT and LOG_LEVEL, when set, win.
func commandLogDefaults(command string, getenv func(string) string) func(string) string {
	format, level := "", ""
	switch command {
	case "serve", "migrate":
		return getenv
	case "dev":
		format = "text"
	default:
		format, level = "text", "warn"
	}
	return func(name string) string {
		v := getenv(name)
		switch {
		case v != "":
			return v
		case name == "LOG_FORMAT":
			return format
		case name == "LOG_LEVEL":
			return level
		}
		return v
	}
}
