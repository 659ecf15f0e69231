package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/jobs"
)

const stockUsage = `usage:
  fulfiller stock list                        levels per price, and prices no longer stocked (orphans)
  fulfiller stock refill <price_id> [--wait 30m] [--reason R]
                                              fill a stocked price's stock now (or follow the refill
                                              under way) rather than at the next minute's check
  fulfiller stock reconcile [--wait 10m] [--reason R]
                                              adopt stock keys Luarmor has and the database does not
  fulfiller stock delete <price_id> [--wait 30m] [--reason R]
                                              delete an orphan price's unsold keys from Luarmor, or
                                              the keys of a price taken out of sale (retiring)
(reads the settings of serve; the running service makes the Luarmor calls; --reason
is kept in the audit log; while waiting, progress shows; Ctrl-C stops waiting, not the work: ` + "`fulfiller follow <job_id>`" + `)
`

// cmdStock shows the key stock and queues its reconciliation or the
// deletion of a price's stock for the service's workers.
func cmdStock(ctx context.Context, args []string, getenv func(string) string, logger *slog.Logger, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, stockUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("stock "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var wait *time.Duration
	reason := new(string)
	if args[0] != "list" {
		reason = fs.String("reason", "", "why, for the audit log")
	}
	want := 0
	switch args[0] {
	case "list":
	case "refill":
		wait = fs.Duration("wait", 30*time.Minute, "how long to wait for the service to make the keys")
		want = 1
	case "reconcile":
		wait = fs.Duration("wait", 10*time.Minute, "how long to wait for the service to list Luarmor's stock keys")
	case "delete":
		wait = fs.Duration("wait", 30*time.Minute, "how long to wait for the service to delete the keys")
		want = 1
	default:
		fmt.Fprint(stderr, stockUsage)
		return errUsage
	}
	positional, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return errUsage
	}
	if len(positional) != want {
		fmt.Fprint(stderr, stockUsage)
		return errUsage
	}
	admin, closeDB, err := openStockAdmin(ctx, getenv, logger)
	if err != nil {
		return err
	}
	defer closeDB()
	cmd := "stock " + args[0]
	switch args[0] {
	case "list":
		return printStock(ctx, admin, stdout)
	case "refill":
		id, err := admin.QueueRefill(ctx, jobs.CLIActor(), *reason, positional[0])
		if err != nil {
			return supportError(cmd, err)
		}
		fmt.Fprintf(stdout, "refill of the stock of %s queued (job %d); waiting for the service\n", positional[0], id)
		return followJob(ctx, admin.River, id, *wait, stdout)
	case "reconcile":
		id, err := admin.QueueReconcile(ctx, jobs.CLIActor(), *reason)
		if err != nil {
			return supportError(cmd, err)
		}
		fmt.Fprintf(stdout, "stock reconciliation queued (job %d); waiting for the service\n", id)
		return followJob(ctx, admin.River, id, *wait, stdout)
	case "delete":
		if err := refuseUnknownPrice(ctx, admin, positional[0], orDefault(getenv("CATALOG_FILE"), "catalog.yaml")); err != nil {
			return err
		}
		id, err := admin.QueueDelete(ctx, jobs.CLIActor(), *reason, positional[0])
		if err != nil {
			return supportError(cmd, err)
		}
		fmt.Fprintf(stdout, "deletion of the stock of %s queued (job %d); waiting for the service\n", positional[0], id)
		return followJob(ctx, admin.River, id, *wait, stdout)
	}
	return nil
}

func printStock(ctx context.Context, admin *jobs.StockAdmin, stdout io.Writer) error {
	levels, err := admin.Levels(ctx)
	if err != nil {
		return fmt.Errorf("stock list: %w", err)
	}
	if len(levels) == 0 {
		fmt.Fprintln(stdout, "no stock: no price is stocked and no stock key is recorded")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PRICE\tPROJECT\tKEY_DAYS\tREADY\tPENDING\tRETIRING\tSOLD\tCATALOG")
	orphans := 0
	for _, l := range levels {
		state := fmt.Sprintf("stock: %d", l.Target)
		switch {
		case l.Orphan():
			orphans++
			state = "not stocked: ORPHAN"
		case l.Target == 0 && l.InCatalog:
			state = "not stocked"
		case l.Target == 0:
			state = "not in catalog"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", l.PriceID, l.ProjectID, l.KeyDays, l.Ready, l.Pending, l.Retiring, l.Sold, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if orphans > 0 {
		fmt.Fprintln(stdout, "an orphan's unsold keys are still sold to units of its project_id and key_days; `fulfiller stock delete <price_id>` deletes them")
	}
	return nil
}

// openStockAdmin connects to the service's database and reads its catalog
// with the settings of serve; it inserts jobs only.
func openStockAdmin(ctx context.Context, getenv func(string) string, logger *slog.Logger) (*jobs.StockAdmin, func(), error) {
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return nil, nil, err
	}
	cat, err := catalog.Load(cfg.CatalogFile)
	if err != nil {
		return nil, nil, err
	}
	pool, rc, err := connectInserter(ctx, cfg, logger)
	if err != nil {
		return nil, nil, err
	}
	return &jobs.StockAdmin{Pool: pool, River: rc, Catalog: cat, Logger: logger}, pool.Close, nil
}

// refuseUnknownPrice stops stock delete for a price with no unsold stock
// key that the catalog does not list either: most likely a mistyped ID,
// for which the deletion would do nothing and report success.
func refuseUnknownPrice(ctx context.Context, admin *jobs.StockAdmin, priceID, catalogFile string) error {
	if _, ok := admin.Catalog.Lookup(priceID); ok {
		return nil
	}
	levels, err := admin.Levels(ctx)
	if err != nil {
		return fmt.Errorf("stock delete: reading the stock levels: %w", err)
	}
	for _, l := range levels {
		if l.PriceID == priceID && l.Ready+l.Pending+l.Retiring > 0 {
			return nil
		}
	}
	return fmt.Errorf("stock delete: price %s has no unsold stock keys and the catalog (%s) does not list it, so there is nothing to delete; check the price ID against `fulfiller stock list`",
		priceID, catalogFile)
}
