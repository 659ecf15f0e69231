package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"fulfiller/internal/budget"
	"fulfiller/internal/catalog"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/metrics"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// sellFromStock delivers a unit of a stocked price with a key of the stock,
// without a Luarmor call, and reports whether it did. The key is taken in
// the transaction that records the delivery and completes the job, so a
// crash leaves either both or neither. A unit the stock cannot serve (none
// left, a subscription's unit, a create already sent for it) is made to
// order as before, in its turn among the orders' units.
func (w *CreateKeyWorker) sellFromStock(ctx context.Context, job *river.Job[CreateKeyArgs]) (bool, error) {
	// A shop that stocks nothing pays no extra read on every create.
	if !w.Catalog.StocksAny() {
		return false, nil
	}
	k, err := postgres.GetKey(ctx, w.Pool, job.Args.OrderKeyID)
	if err != nil {
		return false, nil // the create path reports it
	}
	if !stockServes(w.Catalog, k) {
		return false, nil
	}
	tx, err := beginJobTx(ctx, w.Pool)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit; on any failure the error returned says why
	stockPrice, d, err := takeFromStock(ctx, tx, k)
	if err != nil || stockPrice == "" {
		return false, err
	}
	if err := w.finishDelivery(ctx, tx, job, k, d, stockPrice); err != nil {
		return false, err
	}
	w.Logger.InfoContext(ctx, "key delivered from stock", "order_key_id", k.ID, "user_key", logging.MaskKey(d.UserKey),
		"project_id", k.ProjectID, "key_days", k.KeyDays)
	return true, nil
}

// stockServes reports whether unit k may be sold a key of the stock: a
// pending unit no create was ever sent for, whose key follows key_days
// (not a subscription's), of a price the catalog stocks.
func stockServes(c *catalog.Catalog, k *order.Key) bool {
	if k.Status != order.KeyPending || k.CreateAttempts > 0 || k.Recurring || k.ExpireTarget != nil {
		return false
	}
	product, ok := c.Lookup(k.PriceID)
	return ok && product.Stock > 0
}

// takeFromStock delivers unit k with a key of the stock inside tx (the
// transaction that then records the rest of the delivery, recordDelivered,
// and commits it with the step that made it) and returns the price whose
// stock sold it, "" when none was left. The key still carries its stock
// note: it is read back from Luarmor (replaced if it was used or banned
// before the sale), then the buyer's details and Discord ID follow.
func takeFromStock(ctx context.Context, tx pgx.Tx, k *order.Key) (string, delivery, error) {
	d := delivery{AuthExpire: lifetimeExpiry(k)}
	userKey, stockPrice, err := postgres.SellStockKey(ctx, tx, k.ID, d.AuthExpire)
	if err != nil || userKey == "" {
		return "", delivery{}, err
	}
	d.UserKey = userKey
	if err := insertMany(ctx, tx, StockKeyCheckArgs{OrderKeyID: k.ID}); err != nil {
		return "", delivery{}, err
	}
	return stockPrice, d, nil
}

// queueRefill queues the refill of a price whose key tx sold, as the last
// step before its commit, under the price's stock lock taken shared
// (postgres.LockStock says what it guarantees): sales of one price commit
// side by side, and a refill deciding the stock is full waits for them.
// A refill already waiting or running counts this sale when it decides, so
// none is queued then: concurrent sales of a price would otherwise queue
// one after the other on the refill job's unique key.
func queueRefill(ctx context.Context, tx pgx.Tx, priceID string) error {
	if err := postgres.ShareStockLock(ctx, tx, priceID); err != nil {
		return err
	}
	refill := RefillStockArgs{PriceID: priceID}
	if queued, err := postgres.RefillInFlight(ctx, tx, refill.Kind(), priceID); err != nil || queued {
		return err
	}
	return insertMany(ctx, tx, refill)
}

// stockSold queues, last in tx, the refill of a price whose stock tx sold
// from, and the stock.low event if the sale left it low.
func stockSold(ctx context.Context, tx pgx.Tx, deps Deps, priceID string) error {
	if err := queueRefill(ctx, tx, priceID); err != nil {
		return err
	}
	return eventStockLow(ctx, tx, deps, priceID)
}

// stockSales collects what one transaction's sales from stock call for once
// everything else in it is recorded: the refills of the prices sold from,
// queued last under their stock locks (stockSold), each once and in one
// order, so two transactions that sold several prices never wait on each
// other's locks; and the metrics, counted once it commits.
type stockSales struct {
	prices  []string
	counted []func()
}

func (s *stockSales) add(priceID string, counted func()) {
	s.prices = append(s.prices, priceID)
	s.counted = append(s.counted, counted)
}

// count is how many sales are recorded: a mark to go back to (undo) when
// the savepoint that made the later ones is rolled back.
func (s *stockSales) count() int { return len(s.counted) }

func (s *stockSales) undo(mark int) {
	s.prices, s.counted = s.prices[:mark], s.counted[:mark]
}

// finish queues, last in tx, the refill of every price sold from.
func (s *stockSales) finish(ctx context.Context, tx pgx.Tx, deps Deps) error {
	prices := slices.Clone(s.prices)
	slices.Sort(prices)
	for _, p := range slices.Compact(prices) {
		if err := stockSold(ctx, tx, deps, p); err != nil {
			return err
		}
	}
	return nil
}

// committed counts the sales once their transaction has committed.
func (s *stockSales) committed() {
	for _, f := range s.counted {
		f()
	}
}

// countStockSale counts a delivered unit of a stocked price as a hit (sold
// from stock) or a miss (made to order while the stock was empty). Units
// the stock never serves (a subscription's) are neither.
func (d Deps) countStockSale(k *order.Key, fromStock bool) {
	if k.Recurring || k.ExpireTarget != nil || d.Catalog == nil {
		return
	}
	if product, ok := d.Catalog.Lookup(k.PriceID); !ok || product.Stock == 0 {
		return
	}
	outcome := metrics.StockMiss
	if fromStock {
		outcome = metrics.StockHit
	}
	d.Metrics.StockSale(k.PriceID, outcome)
}

// StockKeySoldArgs gives a key sold from stock what a key made for its
// unit carries: the note of Note (session, customer, email, the unit's
// reference) and the buyer's Discord ID. It is queued by the key's check
// (StockKeyCheckArgs) once the key is found fit to stay the buyer's.
type StockKeySoldArgs struct {
	OrderKeyID int64 `json:"order_key_id"`
}

func (StockKeySoldArgs) Kind() string { return "stock_key_sold" }

func (StockKeySoldArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueLuarmorMaintenance, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// StockKeySoldWorker works StockKeySoldArgs. Every request sets absolute
// values, so a run repeated after a crash sends the same ones again.
type StockKeySoldWorker struct {
	river.WorkerDefaults[StockKeySoldArgs]
	Deps
}

func (w *StockKeySoldWorker) Work(ctx context.Context, job *river.Job[StockKeySoldArgs]) error {
	ctx = budget.WithClass(ctx, budget.ClassMaintenance)
	k, err := postgres.GetKey(ctx, w.Pool, job.Args.OrderKeyID)
	if order.ErrorCode(err) == order.ENOTFOUND {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	if k.UserKey == "" || k.Status == order.KeyDeleted {
		return nil // deleted by a revocation: nothing left to label
	}
	o, err := postgres.GetOrder(ctx, w.Pool, k.CheckoutSessionID)
	if err != nil {
		return err
	}
	log := w.Logger.With("order_key_id", k.ID, "user_key", logging.MaskKey(k.UserKey))
	note := Note(o, k)
	req := luarmor.UpdateUserRequest{UserKey: k.UserKey, Note: &note}
	// The Discord ID goes to the keys discordFor picks, under its rules; a
	// key sold from stock exists already, so an ID Luarmor refuses (in use
	// by another key, or invalid) is recorded and the key keeps none.
	discordID := ""
	if k.DiscordLink != order.DiscordLinked {
		discordID = discordFor(o, k)
	}
	if discordID != "" {
		req.DiscordID = &discordID
	}
	err = w.Luarmor.UpdateUser(ctx, k.ProjectID, req)
	if discordID != "" && isDiscordRefusal(err) {
		link := order.DiscordInUse
		if errors.Is(err, luarmor.ErrInvalidDiscordID) {
			link = order.DiscordInvalid
		}
		if errors.Is(err, luarmor.ErrDiscordUnrecognised) {
			// Never guessed from the words: another key holding the ID
			// makes it in use, none makes it refused as invalid.
			log.WarnContext(ctx, "luarmor refused the buyer's Discord ID for a key sold from stock with a message of no known class; deciding by whether a key holds the ID",
				"luarmor_message", luarmorMessage(err))
			holder, lerr := keyHoldingDiscordID(ctx, w.Luarmor, k.ProjectID, discordID)
			if lerr != nil {
				if jobErr, retry := luarmorRetry(lerr, w.RateLimitWindow); retry {
					return jobErr
				}
				return lerr
			}
			if holder == nil || holder.UserKey == k.UserKey {
				link = order.DiscordInvalid
			}
		}
		if err := postgres.SetDiscordLink(ctx, w.Pool, k.ID, link); err != nil {
			return err
		}
		log.InfoContext(ctx, "luarmor refused the buyer's Discord ID for a key sold from stock; the key keeps none", "discord_link", link)
		discordID = ""
		err = w.Luarmor.UpdateUser(ctx, k.ProjectID, luarmor.UpdateUserRequest{UserKey: k.UserKey, Note: &note})
	}
	switch {
	case errors.Is(err, luarmor.ErrNotFound):
		// Gone since its check (or no check ran: a label queued before
		// there were checks).
		return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
			_, err := settleSoldStockKey(ctx, tx, k, nil, log)
			return err
		})
	case err != nil:
		if jobErr, retry := luarmorRetry(err, w.RateLimitWindow); retry {
			return jobErr
		}
		return river.JobCancel(fmt.Errorf("labelling key sold from stock for order key %d: %w", k.ID, err))
	}
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		if discordID == "" {
			return nil
		}
		return postgres.LinkDiscord(ctx, tx, k.ID)
	})
}

// missingStockKeyWindow is how long after its sale a stock key found
// missing, used or banned is replaced without an operator: its check runs
// within seconds of the sale, and within minutes even behind a spike's
// deliveries.
const missingStockKeyWindow = time.Hour

// missingStockKeyReason is recorded on the reissue of a stock key Luarmor
// no longer had.
const missingStockKeyReason = "The key sold from stock was missing from Luarmor"
