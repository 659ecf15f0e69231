package jobs

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"fulfiller/internal/budget"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// StockKeyCheckArgs reads a key sold from stock back from Luarmor right
// after its sale. A key Luarmor no longer has, or one used or banned before
// the sale, is replaced for its buyer at once (settleSoldStockKey); a key
// that stays the buyer's is then labelled (StockKeySoldArgs), after the
// read, so the label's Discord link never overwrites a link that tells
// who used the key.
type StockKeyCheckArgs struct {
	OrderKeyID int64 `json:"order_key_id"`
}

func (StockKeyCheckArgs) Kind() string { return "stock_key_check" }

// InsertOpts: the buyer holds the key already, so its check is the
// buyer's running access, like a renewal or a Discord link (renew queue
// and class): it waits behind every delivery, so a spike's buyers without
// a key go first, but not behind the maintenance queue, whose stock
// deletions and reconciliations run for minutes. At an idle budget it runs
// within a second of the sale.
func (StockKeyCheckArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueLuarmorRenew, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight}}
}

// StockKeyCheckWorker works StockKeyCheckArgs. Its one Luarmor call is a
// read; the replacement or the label is queued in the commit that
// completes the job, so a run cut off before it reads again and decides
// the same.
type StockKeyCheckWorker struct {
	river.WorkerDefaults[StockKeyCheckArgs]
	Deps

	// beforeRead, when set by tests, runs before the key is read from
	// Luarmor: what happens to the key between its sale and its check.
	beforeRead func(ctx context.Context, projectID, userKey string) error
}

func (w *StockKeyCheckWorker) Work(ctx context.Context, job *river.Job[StockKeyCheckArgs]) error {
	ctx = budget.WithClass(ctx, budget.ClassRenew)
	k, err := postgres.GetKey(ctx, w.Pool, job.Args.OrderKeyID)
	if order.ErrorCode(err) == order.ENOTFOUND {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	if k.UserKey == "" || k.Status == order.KeyDeleted {
		return nil // deleted by a revocation: nothing left to check or label
	}
	if w.beforeRead != nil {
		if err := w.beforeRead(ctx, k.ProjectID, k.UserKey); err != nil {
			return err
		}
	}
	log := w.Logger.With("order_key_id", k.ID, "user_key", logging.MaskKey(k.UserKey))
	u, err := w.Luarmor.GetUser(ctx, k.ProjectID, k.UserKey)
	switch {
	case errors.Is(err, luarmor.ErrNotFound):
		u = nil
	case err != nil:
		if jobErr, retry := luarmorRetry(err, w.RateLimitWindow); retry {
			return jobErr
		}
		// Refused for good: the key stays the buyer's unchecked, and is
		// labelled as any other.
		log.ErrorContext(ctx, "luarmor refused to read a key sold from stock; it was not checked for use before its sale", "error", err)
		return complete(ctx, w.Deps, job, func(tx pgx.Tx) error { return insertMany(ctx, tx, StockKeySoldArgs{OrderKeyID: k.ID}) })
	}
	return complete(ctx, w.Deps, job, func(tx pgx.Tx) error {
		keep, err := settleSoldStockKey(ctx, tx, k, u, log)
		if err != nil || !keep {
			return err
		}
		return insertMany(ctx, tx, StockKeySoldArgs{OrderKeyID: k.ID})
	})
}

// settleSoldStockKey decides, under its order's lock and inside tx, what
// becomes of a key sold from stock given what Luarmor showed of it after
// the sale: u, or nil when Luarmor no longer has it. keep says the key
// stays the buyer's (and is to be labelled).
//
// A revocation or a support action on the key (a ban, a deletion) may have
// changed it in Luarmor and not committed yet, and a revoked order's keys
// are banned or deleted on purpose: the service's own action stands. A key
// still active for a paid order that Luarmor no longer has was deleted
// outside this service (in the dashboard, or before the sale), and one
// soldStockKeyFault finds used or banned before the sale was so in the
// dashboard while in stock: either way the buyer holds a key that does not
// work, or works for someone else. It is reissued (requested_by stock): a
// new key with the full key_days it was sold with is made for the unit and
// shown in its place, the old one is revoked, and the log says so at error.
//
// Only on the service's own say within missingStockKeyWindow of the sale:
// later, the shop may have deleted or banned the key on purpose (abuse),
// and a fresh key would undo that with full days, so the log asks the
// operator instead. The same holds for a key gone from Luarmor whose timer
// the service saw running (its buyer used it).
func settleSoldStockKey(ctx context.Context, tx pgx.Tx, k *order.Key, u *luarmor.User, log *slog.Logger) (keep bool, err error) {
	o, err := postgres.LockOrder(ctx, tx, k.CheckoutSessionID)
	if err != nil {
		return false, err
	}
	if k, err = postgres.GetKey(ctx, tx, k.ID); err != nil { // as of the lock
		return false, err
	}
	acting := false
	for _, kind := range []string{SupportKeyArgs{}.Kind(), RevokeKeyArgs{}.Kind()} {
		inFlight, err := postgres.KeyJobInFlight(ctx, tx, kind, k.ID)
		if err != nil {
			return false, err
		}
		acting = acting || inFlight
	}
	if acting || k.Status != order.KeyActive || o.Status == order.StatusRevoked || o.Status == order.StatusFailed {
		if u == nil {
			log.InfoContext(ctx, "key sold from stock is gone from Luarmor (deleted by a revocation); nothing to label")
			return false, nil
		}
		return true, nil
	}
	if k.DeliveredAt == nil {
		return u != nil, nil // not sold: nothing to judge by
	}
	why, reason := "it is gone from Luarmor (deleted outside this service)", missingStockKeyReason
	if u != nil {
		if why = soldStockKeyFault(*u, k.KeyDays, o.DiscordID, *k.DeliveredAt); why == "" {
			return true, nil
		}
		reason = usedStockKeyReason
	}
	if time.Since(*k.DeliveredAt) > missingStockKeyWindow || (u == nil && k.AuthExpire != nil) {
		if u == nil {
			log.ErrorContext(ctx, "key sold from stock is gone from Luarmor, deleted outside this service after the buyer may have used it; reissue it (fulfiller keys reissue) if the buyer should keep a key")
			return false, nil
		}
		log.ErrorContext(ctx, "key sold from stock found unusable long after its sale: "+why+"; the shop may have done it on purpose, so it is kept; reissue it (fulfiller keys reissue) if the buyer should have a working key")
		return true, nil
	}
	id, err := recordReissue(ctx, tx, ActorStock, o, k, reason)
	if err != nil {
		return false, err
	}
	log.ErrorContext(ctx, "key sold from stock was unusable: "+why+"; a new key is made for the buyer", "reissue_id", id)
	return false, insertMany(ctx, tx, SupportKeyArgs{Action: ActionReissueKey, OrderKeyID: k.ID, ReissueID: id,
		Reason: reason, Actor: ActorStock})
}

// usedStockKeyReason is recorded on the reissue of a stock key found used
// or banned from before its sale, and becomes the old key's ban reason.
const usedStockKeyReason = "The key sold from stock was used or banned before its sale"

// stockClockSkew is how far Luarmor's clock may be off the database's: a
// start or reset that close before the sale is taken for the buyer's.
const stockClockSkew = time.Minute

// soldStockKeyFault says why a key sold from stock at soldAt (the
// database's clock), with keyDays days, to a buyer who gave buyerDiscord
// (or ""), cannot stay the buyer's as Luarmor shows it after the sale, or
// "" when it can.
//
// Luarmor's user object carries no time of use, only what use leaves, and
// the buyer may have run the key between the sale and this read: a HWID,
// a Discord link, executions and a running timer are what the buyer's own
// first run leaves too, and must not cost them their key. So only what
// the buyer cannot have done counts:
//
//   - A ban, unless the key was first run after the sale (then the shop
//     banned its buyer on purpose). The service bans a sold key only
//     through a revocation or a support action, which the caller rules
//     out, and a key banned before the sale never runs for its buyer.
//   - A key_days timer started before the sale. A start sets auth_expire
//     to start + key_days × 86400, so the start is auth_expire − key_days
//     × 86400; the buyer's first run comes after the sale.
//   - With the timer not started: a HWID, a Discord ID other than the
//     buyer's, executions. The first run (or a redeem through Luarmor's
//     Discord bot) starts the timer, so none of these is the buyer's: a
//     HWID or link was set in the dashboard.
//   - A HWID reset before the sale (total_resets > 0, last_reset before
//     it): the key was bound before it was sold.
//
// A lifetime key (key_days 0) has no timer to date its use by: a HWID, a
// Discord link or executions on it may be its buyer's, so only a ban, an
// expiry set on it (auth_expire other than -1; its buyer cannot set one)
// and a reset before the sale count. Starts and resets within
// stockClockSkew before the sale are taken for the buyer's.
func soldStockKeyFault(u luarmor.User, keyDays int, buyerDiscord string, soldAt time.Time) string {
	cut := soldAt.Add(-stockClockSkew).Unix()
	started := u.AuthExpire != luarmor.NeverExpires
	startedAt := u.AuthExpire - int64(keyDays)*86400
	runAfterSale := keyDays > 0 && started && startedAt >= cut
	switch {
	case (u.IsBanned() || u.Status == luarmor.StatusBanned) && !runAfterSale:
		return "it is banned"
	case u.TotalResets > 0 && u.LastReset > 0 && u.LastReset < cut:
		return "its HWID was reset before the sale"
	case keyDays == 0 && started:
		return "an expiry was set on the lifetime key"
	case keyDays == 0:
		return ""
	case started && !runAfterSale:
		return "its time started before the sale"
	case started:
		return "" // first run after the sale: by its buyer
	case u.Identifier != "":
		return "it is bound to a HWID and its time has not started"
	case u.DiscordID != "" && u.DiscordID != buyerDiscord:
		return "it is linked to another Discord account and its time has not started"
	case u.TotalExecutions > 0:
		return "it was executed and its time has not started"
	}
	return ""
}
