package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/riverqueue/river"

	"fulfiller/internal/budget"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/postgres"
)

// reconcileStockEvery is how often the leader compares Luarmor's stock keys
// with the database; keys the database lost are rare (a restored backup,
// a second deployment on the project), so an hour is plenty.
const reconcileStockEvery = time.Hour

// Paging of the stock listing. A price holds at most catalog.MaxStock keys,
// so maxStockListPages pages of stockListPage keys cover a project's stock;
// a listing cut at the bound says so in the summary and the log.
const (
	stockListPage     = 100
	maxStockListPages = 100
)

// stockNoteSearch is what the listing asks Luarmor for: a substring of
// every stock note (StockNote). Luarmor's search is loose, so each key's
// note is then matched whole by stockNotePattern.
const stockNoteSearch = "stock " + noteReferencePrefix

var stockNotePattern = regexp.MustCompile(`^stock ` + noteReferencePrefix + `(fk_[0-9a-f]{20})$`)

// ReconcileStockArgs compares the stock keys Luarmor holds (by their
// note) with stock_keys, for every project of a stocked price, adopts the
// keys the database lost and takes out of sale the ready keys someone used
// or banned in the meantime.
type ReconcileStockArgs struct {
	// Actor names an operator's run (ActorCLI); empty for the periodic one.
	Actor string `json:"actor,omitempty"`
}

func (ReconcileStockArgs) Kind() string { return "reconcile_stock" }

// InsertOpts: the periodic run is worked with the refills and, like them,
// spends only spare budget (budget.ClassStock), so it never makes a
// delivery, renewal or revocation wait; at a budget too small for stock
// (COUNT below 5) it waits for good, as the refills do. An operator's run
// waits at the terminal, so it takes the maintenance queue and class, like
// the support commands: it goes after every more urgent request.
func (a ReconcileStockArgs) InsertOpts() river.InsertOpts {
	queue := QueueLuarmorStock
	if a.Actor != "" {
		queue = QueueLuarmorMaintenance
	}
	return river.InsertOpts{Queue: queue, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

func (a ReconcileStockArgs) class() budget.Class {
	if a.Actor != "" {
		return budget.ClassMaintenance
	}
	return budget.ClassStock
}

// StockReconcileSummary is what a reconciliation found; the job records it
// as its output for `fulfiller stock reconcile`.
type StockReconcileSummary struct {
	// Listed counts the Luarmor keys carrying a stock note.
	Listed int `json:"listed"`
	// Known were recorded already (ready, sold or retiring).
	Known int `json:"known"`
	// Retired were ready but used, banned or linked: taken out of sale
	// (retiring), logged for the operator.
	Retired int `json:"retired"`
	// Made were planned by a refill cut off before it recorded them:
	// recorded ready, as the refill's look-up would have.
	Made int `json:"made"`
	// Adopted had no row: recorded ready for a stocked price.
	Adopted int `json:"adopted"`
	// Unusable were used, banned or linked: not adopted, logged for the
	// operator.
	Unusable int `json:"unusable"`
	// NoPrice had no stocked price of their (project_id, key_days).
	NoPrice int `json:"no_price"`
	// Strays carry a recorded reference but are not the key recorded for
	// it: a duplicate to delete in the dashboard.
	Strays int `json:"strays"`
	// Truncated names the projects whose listing stopped at the bound.
	Truncated []string `json:"truncated,omitempty"`
}

func (s StockReconcileSummary) String() string {
	out := fmt.Sprintf("%d stock keys in Luarmor: %d known, %d taken out of sale (used, banned or linked), %d recorded made, %d adopted, %d not adopted (used, banned or linked), %d without a stocked price of their key_days, %d duplicates",
		s.Listed, s.Known, s.Retired, s.Made, s.Adopted, s.Unusable, s.NoPrice, s.Strays)
	if len(s.Truncated) > 0 {
		out += fmt.Sprintf("; listing stopped at %d keys in %v", stockListPage*maxStockListPages, s.Truncated)
	}
	return out
}

// ReconcileStockWorker works ReconcileStockArgs. Every step is a look-up
// or a write guarded by the row's state or a unique index, so two runs at
// once, or a run repeated after a crash, adopt each key once.
type ReconcileStockWorker struct {
	river.WorkerDefaults[ReconcileStockArgs]
	Deps
}

// Timeout covers a listing of every stocked project, each page waiting for
// its budget slot.
func (w *ReconcileStockWorker) Timeout(*river.Job[ReconcileStockArgs]) time.Duration {
	return 30 * time.Minute
}

func (w *ReconcileStockWorker) Work(ctx context.Context, job *river.Job[ReconcileStockArgs]) error {
	ctx = budget.WithClass(ctx, job.Args.class())
	progress := w.progressRecorder(ctx, job.JobRow)
	sum, err := reconcileStock(ctx, w.Deps, progress)
	if err != nil {
		if jobErr, retry := luarmorRetry(err, w.RateLimitWindow); retry {
			return jobErr
		}
		return err
	}
	log := w.Logger
	if job.Args.Actor != "" {
		log = log.With("actor", job.Args.Actor)
	}
	log.InfoContext(ctx, "stock reconciled", "listed", sum.Listed, "known", sum.Known, "retired", sum.Retired, "made", sum.Made,
		"adopted", sum.Adopted, "unusable", sum.Unusable, "no_price", sum.NoPrice, "strays", sum.Strays)
	out, err := progress.WithLastCount(sum)
	if err != nil {
		return err
	}
	return river.RecordOutput(ctx, out)
}

// ReconcileStock lists, for every project of a price the catalog stocks,
// the Luarmor keys whose note is a stock note, and settles each against
// stock_keys by its reference:
//   - a pending row (a refill cut off after its create) is recorded made;
//   - no row, by reference or by key: adopted as a ready key of a stocked
//     price of the same project_id and key_days, if it was never used;
//   - a ready row of a key someone used, banned or linked meanwhile (in the
//     dashboard, while in stock): taken out of sale (ready -> retiring, the
//     status a deletion gives, so no sale takes it) and logged for the
//     operator; the refill replaces it;
//   - any other ready row, or a sold or retiring one: nothing.
//
// Its Luarmor requests take ctx's budget class.
func ReconcileStock(ctx context.Context, d Deps) (StockReconcileSummary, error) {
	return reconcileStock(ctx, d, nil)
}

// reconcileStock is ReconcileStock recording its progress with progress:
// the keys this run has settled, out of the unsold keys the database
// holds for the projects (the total grows when Luarmor lists more). A run
// retried lists everything again, so it counts from zero again.
func reconcileStock(ctx context.Context, d Deps, progress *ProgressRecorder) (StockReconcileSummary, error) {
	var sum StockReconcileSummary
	// For each project, the stocked price of each key_days: the first by
	// ID when several share one, so an adoption's price never depends on
	// map order.
	prices := map[string]map[int]string{}
	var projects []string
	for _, id := range d.Catalog.Stocked() {
		p, ok := d.Catalog.Lookup(id)
		if !ok {
			continue
		}
		if prices[p.ProjectID] == nil {
			prices[p.ProjectID] = map[int]string{}
			projects = append(projects, p.ProjectID)
		}
		if _, taken := prices[p.ProjectID][p.KeyDays]; !taken {
			prices[p.ProjectID][p.KeyDays] = id
		}
	}
	expected := 0
	if progress != nil {
		n, err := postgres.UnsoldStockKeys(ctx, d.Pool, projects)
		if err != nil {
			return sum, err
		}
		expected = n
	}
	for i, project := range projects {
		log := d.Logger.With("project_id", project)
		phase := fmt.Sprintf("listing the stock keys of project %s (%d of %d)", project, i+1, len(projects))
		progress.Record(ctx, Progress{Phase: phase, Done: sum.Listed, Total: max(expected, sum.Listed), Unit: "stock keys checked"})
		complete := false
		for page := range maxStockListPages {
			from, until := page*stockListPage, (page+1)*stockListPage
			users, err := d.Luarmor.ListUsers(ctx, project, luarmor.ListUsersOptions{Search: stockNoteSearch, From: &from, Until: &until})
			if err != nil {
				return sum, fmt.Errorf("listing the stock keys of project %s (from %d): %w", project, from, err)
			}
			for _, u := range users {
				if err := settleStockKey(ctx, d, project, prices[project], u, &sum, log); err != nil {
					return sum, err
				}
				progress.Record(ctx, Progress{Phase: phase, Done: sum.Listed, Total: max(expected, sum.Listed), Unit: "stock keys checked"})
			}
			if len(users) < stockListPage {
				complete = true
				break
			}
		}
		if !complete {
			sum.Truncated = append(sum.Truncated, project)
			log.WarnContext(ctx, "stock listing stopped at its bound; the keys past it are settled by no run",
				"bound", stockListPage*maxStockListPages)
		}
	}
	// Listed, the total is what was there: the run is done.
	progress.Record(ctx, Progress{Phase: "done", Done: sum.Listed, Total: sum.Listed, Unit: "stock keys checked"})
	return sum, nil
}

// settleStockKey settles one listed key. The listing pages by index over
// keys that change as they are sold (a sold key's note is rewritten), so a
// key may be skipped by one run; the next run settles it.
func settleStockKey(ctx context.Context, d Deps, project string, priceOfDays map[int]string, u luarmor.User, sum *StockReconcileSummary, log *slog.Logger) error {
	m := stockNotePattern.FindStringSubmatch(u.Note)
	if m == nil {
		return nil // a note merely containing the search text
	}
	sum.Listed++
	reference := m[1]
	log = log.With("reference", reference, "user_key", logging.MaskKey(u.UserKey))
	row, err := postgres.StockKeyByReference(ctx, d.Pool, reference)
	if err != nil {
		return err
	}
	switch {
	case row != nil && row.Status == "pending" && row.ProjectID == project:
		err := postgres.StockKeyMade(ctx, d.Pool, row.ID, u.UserKey)
		if errors.Is(err, postgres.ErrStockKeyRecordedElsewhere) {
			// The refill recorded another key of this reference meanwhile.
			sum.Strays++
			log.ErrorContext(ctx, "a Luarmor key carries the reference of another stock key; delete it in the Luarmor dashboard",
				"price_id", row.PriceID)
			return nil
		}
		if err != nil {
			return err
		}
		sum.Made++
		log.InfoContext(ctx, "stock key of a cut-off refill recorded", "price_id", row.PriceID)
		return nil
	case row != nil && row.Status == "ready" && row.UserKey == u.UserKey && row.ProjectID == project:
		return retireIfUnsellable(ctx, d, row, u, sum, log)
	case row != nil && (row.UserKey == u.UserKey || row.Status == "pending"):
		sum.Known++
		return nil
	case row != nil:
		sum.Strays++
		log.ErrorContext(ctx, "a Luarmor key carries the reference of another stock key; delete it in the Luarmor dashboard",
			"price_id", row.PriceID)
		return nil
	}
	if why := unsellable(u); why != "" {
		sum.Unusable++
		log.WarnContext(ctx, "stock key unknown to the database not adopted: "+why+"; check it in the Luarmor dashboard and delete it if no buyer holds it")
		return nil
	}
	priceID, ok := priceOfDays[u.KeyDays]
	if !ok {
		sum.NoPrice++
		log.WarnContext(ctx, "stock key unknown to the database not adopted: no stocked price has its key_days; stock such a price, or delete the key in the Luarmor dashboard",
			"key_days", u.KeyDays)
		return nil
	}
	adopted, err := postgres.AdoptStockKey(ctx, d.Pool, postgres.StockPlan{PriceID: priceID, ProjectID: project, KeyDays: u.KeyDays}, reference, u.UserKey)
	if err != nil {
		return err
	}
	if !adopted {
		sum.Known++ // another run adopted it first, or a unit holds it
		return nil
	}
	sum.Adopted++
	log.InfoContext(ctx, "stock key adopted", "price_id", priceID, "key_days", u.KeyDays)
	return nil
}

// retireIfUnsellable takes a ready stock key out of sale when Luarmor shows
// it used, banned or linked (unsellable): nobody bought it, so the shop's
// staff or whoever had the key from them did it while it was in stock, and
// it must never reach a buyer as new. The key is left in Luarmor: its ban
// may be on purpose, and whoever uses it may hold it from the shop, so the
// operator decides (`fulfiller stock delete` deletes retiring keys). The
// status change waits for a sale holding the row and skips a key it sold,
// whose own check after the sale reads it again.
func retireIfUnsellable(ctx context.Context, d Deps, row *postgres.StockKey, u luarmor.User, sum *StockReconcileSummary, log *slog.Logger) error {
	why := unsellable(u)
	if why == "" {
		sum.Known++
		return nil
	}
	retired, err := postgres.RetireStockKey(ctx, d.Pool, row.ID)
	if err != nil {
		return err
	}
	if !retired {
		sum.Known++ // sold meanwhile
		return nil
	}
	sum.Retired++
	log.WarnContext(ctx, "stock key taken out of sale: "+why+" while in stock; check it in the Luarmor dashboard, then delete it with `fulfiller stock delete "+row.PriceID+"` if no one should keep it",
		"price_id", row.PriceID)
	return nil
}

// unsellable says why a key cannot be sold as new, or "" when it can: its
// timer has not started and nobody has used, claimed or banned it.
func unsellable(u luarmor.User) string {
	switch {
	case u.IsBanned() || u.Status == luarmor.StatusBanned:
		return "it is banned"
	case u.AuthExpire != luarmor.NeverExpires:
		return "its time has started"
	case u.Identifier != "":
		return "it is bound to a HWID"
	case u.DiscordID != "":
		return "it is linked to a Discord account"
	case u.TotalExecutions > 0:
		return "it has been executed"
	}
	return ""
}
