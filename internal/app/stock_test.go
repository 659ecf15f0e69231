package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/postgres/postgrestest"
	"fulfiller/internal/stripeapi/stripefake"
)

const priceStocked = "price_stock7" // a week's key of project, kept in stock

// setupStock starts the service with priceStocked keeping stock keys and
// waits until they are made.
func setupStock(t *testing.T, stock int, opts ...func(*options)) *bundle {
	t.Helper()
	opts = append(opts, func(o *options) {
		o.stock = map[string]catalog.Product{priceStocked: {ProjectID: project, KeyDays: 7, Stock: stock}}
	})
	b := setup(t, opts...)
	b.waitStock(t, stock)
	return b
}

// waitStock waits until priceStocked holds ready keys, made by its refill
// jobs.
func (b *bundle) waitStock(t *testing.T, ready int) {
	t.Helper()
	b.WaitJobsUntil(t, fmt.Sprintf("the stock to hold %d keys", ready), func() bool {
		n, pending, err := postgrestest.StockLevel(context.Background(), b.Pool, priceStocked)
		return err == nil && n == ready && pending == 0
	})
}

// readyStock returns the user keys of the unsold stock.
func (b *bundle) readyStock(t *testing.T) map[string]bool {
	t.Helper()
	rows, err := b.Pool.Query(context.Background(), `SELECT user_key FROM stock_keys WHERE status = 'ready'`)
	require.NoError(t, err)
	keys := map[string]bool{}
	for rows.Next() {
		var k string
		require.NoError(t, rows.Scan(&k))
		keys[k] = true
	}
	require.NoError(t, rows.Err())
	return keys
}

func TestPurchaseIsDeliveredFromStockThenLabelled(t *testing.T) {
	t.Parallel()
	b := setupStock(t, 3)
	stocked := b.readyStock(t)
	for k := range stocked {
		u := b.user(t, k)
		require.Equal(t, 7, u.KeyDays, "stock keys have the price's key_days")
		require.True(t, strings.HasPrefix(u.Note, "stock ref:fk_"), "stock keys are marked as stock with their reference: %q", u.Note)
	}
	createsBefore := b.creates()

	watch := fulfillertest.WatchJobs(t, b.Main.River)
	s := b.paidSession(t, stripefake.Item{PriceID: priceStocked, Quantity: 1})
	s.DiscordID = "123456789012345678"
	b.Stripe.PutSession(s)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	o := b.WaitOrder(t, s.ID, "fulfilled")

	require.Len(t, o.Keys, 1)
	key := o.Keys[0].UserKey
	require.True(t, stocked[key], "the key is one the stock held before the purchase")
	require.Zero(t, b.Count(t, `SELECT create_attempts FROM order_keys WHERE user_key = $1`, key),
		"no create was ever claimed for the unit: the purchase path sent nothing to Luarmor")
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM stock_keys s JOIN order_keys k ON k.id = s.order_key_id
		WHERE s.status = 'sold' AND k.checkout_session_id = $1 AND s.user_key = $2`, s.ID, key))
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM order_keys WHERE user_key = $1`, key), "sold once")

	// Afterwards the key carries what a made key does (its label job
	// rewrites the note and Discord ID, and records the link), and the
	// stock is topped up again.
	watch.WaitCompleted(t, "stock_key_sold", 1)
	u := b.user(t, key)
	require.Contains(t, u.Note, s.ID, "the sold key's note was rewritten")
	require.Contains(t, u.Note, "cus:"+s.Customer)
	require.Equal(t, s.DiscordID, u.DiscordID, "the buyer's Discord ID was set")
	require.NotContains(t, u.Note, "stock")
	require.Contains(t, u.Note, defaultMail)
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM order_keys WHERE user_key = $1 AND discord_link = 'linked'`, key),
		"the link is recorded once Luarmor made it")
	b.waitStock(t, 3)
	require.Equal(t, createsBefore+1, b.creates(), "one create, by the refill, replaced the sold key")
}

func TestStockRunsOutAndTheRestIsMadeToOrder(t *testing.T) {
	t.Parallel()
	b := setupStock(t, 3)
	stocked := b.readyStock(t)

	s, o := b.buy(t, stripefake.Item{PriceID: priceStocked, Quantity: 10})

	seen := map[string]bool{}
	fromStock := 0
	for _, k := range o.Keys {
		require.False(t, seen[k.UserKey], "no key delivered twice")
		seen[k.UserKey] = true
		u := b.user(t, k.UserKey) // in project, or user() fails
		require.Equal(t, 7, u.KeyDays, "every key has the price's key_days")
		if stocked[k.UserKey] {
			fromStock++
		}
	}
	require.Len(t, seen, 10)
	sold := b.Count(t, `SELECT count(*) FROM stock_keys s JOIN order_keys k ON k.id = s.order_key_id WHERE k.checkout_session_id = $1`, s.ID)
	require.GreaterOrEqual(t, fromStock, 3, "the stock held before the purchase was sold first")
	require.Equal(t, sold, b.Count(t, `SELECT count(*) FROM order_keys WHERE checkout_session_id = $1 AND create_attempts = 0`, s.ID),
		"exactly the units delivered from stock sent no create")
	require.Equal(t, 10-sold, b.Count(t, `SELECT count(*) FROM order_keys WHERE checkout_session_id = $1 AND create_attempts > 0`, s.ID),
		"the rest were created on demand")
	require.Zero(t, b.Count(t, `SELECT count(*) FROM stock_keys WHERE status = 'sold' AND user_key IN
		(SELECT user_key FROM stock_keys WHERE status = 'ready')`))
	b.waitStock(t, 3)
}

func TestRefundRevokesAKeySoldFromStock(t *testing.T) {
	t.Parallel()
	b := setupStock(t, 2)
	stocked := b.readyStock(t)
	s, o := b.buy(t, stripefake.Item{PriceID: priceStocked, Quantity: 1})
	key := o.Keys[0].UserKey
	require.True(t, stocked[key])

	ch := b.charge(t, s.PaymentIntent, "")
	b.Deliver(t, b.refund(t, ch, s.PaymentIntent, "", 1000))
	b.waitKeys(t, s.ID, "revoked", "blacklisted")
	u := b.user(t, key)
	require.True(t, u.IsBanned())
	require.Equal(t, "Payment refunded", u.BanReason)
}

// A stock key deleted in the Luarmor dashboard before it was sold reaches
// a buyer dead: the label step finds it gone and makes the buyer a new key
// with the full key_days, shown in its place.
func TestStockKeyDeletedOutsideIsReplacedForItsBuyer(t *testing.T) {
	t.Parallel()
	b := setupStock(t, 1)
	var dead string
	for k := range b.readyStock(t) {
		dead = k
	}
	lc := b.Luarmor.Client()
	require.NoError(t, lc.DeleteUser(context.Background(), project, dead), "deleted in the dashboard, unknown to the service")

	s, _ := b.buy(t, stripefake.Item{PriceID: priceStocked, Quantity: 1})
	o := b.WaitOrderFor(t, s.ID, "a new key made for the unit, and the dead one recorded deleted", func(o httpapi.OrderJSON) bool {
		return len(o.Keys) == 2 && o.Keys[1].Status == "active" && o.Keys[0].Status == "deleted"
	})
	require.Equal(t, dead, o.Keys[0].UserKey)
	fresh := o.Keys[1].UserKey
	u := b.user(t, fresh)
	require.Equal(t, 7, u.KeyDays, "the full key_days it was sold with")
	require.Contains(t, u.Note, s.ID)
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM key_reissues WHERE requested_by = 'stock' AND status = 'done'`))
}

// A sold key found missing long after its sale may have been deleted in the
// dashboard on purpose: it is reported, not replaced with a fresh key.
func TestStockKeyFoundMissingLongAfterItsSaleIsNotReplaced(t *testing.T) {
	t.Parallel()
	b := setupStock(t, 1)
	watch := fulfillertest.WatchJobs(t, b.Main.River)
	s, o := b.buy(t, stripefake.Item{PriceID: priceStocked, Quantity: 1})
	key := o.Keys[0].UserKey
	watch.WaitCompleted(t, "stock_key_sold", 1)
	require.Contains(t, b.user(t, key).Note, s.ID, "the sold key is labelled")

	// Hours later the shop deletes the key in the dashboard, and the label
	// job runs again (a retry, a replayed job).
	ctx := context.Background()
	lc := b.Luarmor.Client()
	require.NoError(t, lc.DeleteUser(ctx, project, key))
	_, err := b.Pool.Exec(ctx, `UPDATE order_keys SET delivered_at = now() - interval '2 hours' WHERE user_key = $1`, key)
	require.NoError(t, err)
	var unit int64
	require.NoError(t, b.Pool.QueryRow(ctx, `SELECT id FROM order_keys WHERE user_key = $1`, key).Scan(&unit))
	run, err := b.Main.River.Insert(ctx, jobs.StockKeySoldArgs{OrderKeyID: unit}, nil)
	require.NoError(t, err)
	require.Equal(t, rivertype.JobStateCompleted, waitJobEnded(t, watch, run.Job.ID, 1).Job.State)
	require.Zero(t, b.Count(t, `SELECT count(*) FROM key_reissues`), "no key is made on the service's own say")
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM order_keys WHERE checkout_session_id = $1`, s.ID))
}

// waitStockReconciled waits until no stock reconciliation waits or runs
// (the service's run at start-up).
func (b *bundle) waitStockReconciled(t *testing.T) {
	t.Helper()
	b.WaitJobsUntil(t, "no stock reconciliation left", func() bool {
		return b.Count(t, `SELECT count(*) FROM river_job WHERE kind = 'reconcile_stock'
			AND state NOT IN ('completed', 'cancelled', 'discarded')`) == 0
	})
}

// onlyReadyStock returns the one unsold stock key.
func (b *bundle) onlyReadyStock(t *testing.T) string {
	t.Helper()
	ready := b.readyStock(t)
	require.Len(t, ready, 1)
	for k := range ready {
		return k
	}
	return ""
}

// waitReplaced waits until the order shows its stock key revoked and a
// new key in its place.
func (b *bundle) waitReplaced(t *testing.T, sessionID string) httpapi.OrderJSON {
	t.Helper()
	return b.WaitOrderFor(t, sessionID, "the stock key replaced", func(o httpapi.OrderJSON) bool {
		return o.Status == "fulfilled" && len(o.Keys) == 2 && o.Keys[0].Status == "blacklisted" && o.Keys[1].Status == "active"
	})
}

// A stock key banned in the dashboard while it waited in stock, and sold
// before a reconciliation saw it, reaches its buyer banned: the check
// after the sale replaces it, and the buyer's page shows a working key.
func TestStockKeyBannedInTheDashboardIsReplacedForItsBuyer(t *testing.T) {
	t.Parallel()
	b := setupStock(t, 1)
	b.waitStockReconciled(t)
	banned := b.onlyReadyStock(t)
	lc := b.Luarmor.Client()
	require.NoError(t, lc.Blacklist(context.Background(), project, luarmor.BlacklistRequest{UserKey: banned, BanReason: "test ban"}),
		"banned in the dashboard, unknown to the service")

	s := b.paidSession(t, stripefake.Item{PriceID: priceStocked, Quantity: 1})
	s.DiscordID = "123456789012345678"
	b.Stripe.PutSession(s)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	o := b.waitReplaced(t, s.ID)
	require.Equal(t, banned, o.Keys[0].UserKey, "the buyer was sold the banned key")
	fresh := o.Keys[1].UserKey
	require.NotEqual(t, banned, fresh)
	b.WaitJobsUntil(t, "the new key to carry the buyer's note and Discord ID", func() bool {
		u := b.user(t, fresh)
		return strings.Contains(u.Note, s.ID) && u.DiscordID == s.DiscordID
	})
	u := b.user(t, fresh)
	require.False(t, u.IsBanned())
	require.Equal(t, 7, u.KeyDays, "the full key_days")
	require.True(t, b.user(t, banned).IsBanned())
	require.Empty(t, b.user(t, banned).DiscordID, "the buyer's Discord ID never went to the banned key")
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM key_reissues WHERE requested_by = 'stock' AND status = 'done'`))
}

// A stock key run on someone's machine hours before its sale, and linked
// to their Discord account, is replaced for its buyer; the stranger's link
// does not follow to the new key, the buyer's does.
func TestStockKeyUsedBeforeItsSaleIsReplacedAndTheBuyerGetsTheirDiscordLink(t *testing.T) {
	t.Parallel()
	b := setupStock(t, 1)
	b.waitStockReconciled(t)
	used := b.onlyReadyStock(t)
	hoursAgo := time.Now().Add(-3 * time.Hour)
	stranger := "999999999999999999"
	_, err := b.Luarmor.SetUserState(project, used, sandbox.UserState{StartedAt: &hoursAgo, DiscordID: &stranger})
	require.NoError(t, err)
	require.NoError(t, b.Luarmor.Execute(project, used, "pc-of-a-stranger"))

	s := b.paidSession(t, stripefake.Item{PriceID: priceStocked, Quantity: 1})
	s.DiscordID = "123456789012345678"
	b.Stripe.PutSession(s)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	o := b.waitReplaced(t, s.ID)
	require.Equal(t, used, o.Keys[0].UserKey)
	fresh := o.Keys[1].UserKey
	b.WaitJobsUntil(t, "the buyer's Discord ID linked to the new key", func() bool { return b.user(t, fresh).DiscordID == s.DiscordID })
	u := b.user(t, fresh)
	require.Equal(t, 7, u.KeyDays, "the full key_days, not what the stranger left")
	require.Empty(t, u.Identifier)
	old := b.user(t, used)
	require.True(t, old.IsBanned(), "the stranger's use ends")
	require.Empty(t, old.DiscordID, "the link moved off the old key is the buyer's place, not the stranger's: cleared")
}

// A ready key someone ran while it waited in stock is taken out of sale by
// the operator's reconciliation and never sold.
func TestReconcileTakesAStockKeyRunWhileInStockOutOfSale(t *testing.T) {
	t.Parallel()
	b := setupStock(t, 1)
	b.waitStockReconciled(t)
	used := b.onlyReadyStock(t)
	require.NoError(t, b.Luarmor.Execute(project, used, "pc-of-a-tester"))

	admin := &jobs.StockAdmin{Pool: b.Pool, River: b.Main.River, Catalog: b.Catalog, Logger: fulfillertest.Logger(t, slog.LevelWarn)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id, err := admin.QueueReconcile(ctx, jobs.ActorCLI, "")
	require.NoError(t, err)
	var sum jobs.StockReconcileSummary
	require.NoError(t, admin.Wait(ctx, id, &sum))
	require.Equal(t, 1, sum.Retired)
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM stock_keys WHERE user_key = $1 AND status = 'retiring'`, used))

	// The stock holds no key for sale until the next refill: the unit is
	// made to order rather than sold the retired key.
	_, o := b.buy(t, stripefake.Item{PriceID: priceStocked, Quantity: 1})
	require.NotEqual(t, used, o.Keys[0].UserKey, "the key run while in stock is never sold")
	require.Equal(t, "pc-of-a-tester", b.user(t, used).Identifier, "and is left in Luarmor for the operator")
}
