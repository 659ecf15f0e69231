package jobs_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// checkedStock starts a client selling priceBought from a stock of one key
// whose check, before it reads the first key sold, runs change on it: what
// happened to the key, as Luarmor shows it after the sale. It returns a
// function that gives that first key, and the watch of the client's jobs.
func checkedStock(t *testing.T, b *testBundle, change func(projectID, userKey string) error) (*jobs.StockAdmin, func() string, *fulfillertest.JobWatch) {
	t.Helper()
	var mu sync.Mutex
	first := ""
	deps := adoptDeps(b, 1)
	client, err := jobs.NewClientWithStockCheckHook(deps, jobs.Config{}, func(_ context.Context, projectID, userKey string) error {
		mu.Lock()
		defer mu.Unlock()
		if first != "" {
			return nil
		}
		first = userKey
		return change(projectID, userKey)
	})
	require.NoError(t, err)
	w := b.start(t, client)
	b.waitStockOf(t, w, priceBought, 1)
	return &jobs.StockAdmin{Pool: b.pool, River: client, Catalog: deps.Catalog, Logger: deps.Logger}, func() string {
		mu.Lock()
		defer mu.Unlock()
		return first
	}, w
}

// waitReissued waits until the order's first key was replaced: its
// reissue done and the order fulfilled again.
func (b *testBundle) waitReissued(t *testing.T, w *fulfillertest.JobWatch, sessionID string) (*order.Order, postgres.Reissue) {
	t.Helper()
	var o *order.Order
	var r []postgres.Reissue
	waitUntil(t, w, "the key replaced", func() bool {
		var err error
		if r, err = postgres.ReissuesOfOrder(context.Background(), b.pool, sessionID); err != nil || len(r) != 1 || r[0].Status != "done" {
			return false
		}
		o, err = postgres.GetOrder(context.Background(), b.pool, sessionID)
		return err == nil && o.Status == order.StatusFulfilled
	})
	return o, r[0]
}

func TestStockKeyUsedOrBannedBeforeItsSaleIsReplacedForItsBuyer(t *testing.T) {
	t.Parallel()
	beforeSale := time.Now().Add(-3 * time.Hour)
	for name, state := range map[string]sandbox.UserState{
		"banned":                     {Banned: ptr(true), BanReason: "leaked"},
		"bound to a HWID":            {Identifier: ptr("pc-of-someone")},
		"linked to a Discord ID":     {DiscordID: ptr("333333333333333333")},
		"started before the sale":    {StartedAt: &beforeSale},
		"run and reset before it":    {StartedAt: &beforeSale, TotalExecutions: ptr(5), LastReset: &beforeSale},
		"bound and banned before it": {Identifier: ptr("pc-of-someone"), Banned: ptr(true)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			admin, sold, w := checkedStock(t, b, func(projectID, userKey string) error {
				_, err := b.sandbox.SetUserState(projectID, userKey, state)
				return err
			})
			id := "cs_test_spoiled01" // a database of its own
			b.purchase(t, admin.River, id, 1)
			o, r := b.waitReissued(t, w, id)

			old := sold()
			require.Len(t, o.Keys, 2)
			require.Equal(t, old, o.Keys[0].UserKey, "the buyer was sold the stock key")
			require.Zero(t, o.Keys[0].CreateAttempts)
			require.Equal(t, order.KeyBlacklisted, o.Keys[0].Status, "the bad key is revoked: the buyer no longer holds it")
			require.Equal(t, order.KeyActive, o.Keys[1].Status, "the order shows a new key")
			fresh := o.Keys[1].UserKey
			require.NotEqual(t, old, fresh)
			require.Equal(t, jobs.ActorStock, r.RequestedBy)
			require.Equal(t, o.Keys[0].ID, r.OldKeyID)
			require.Less(t, r.CreatedAt.Sub(*o.Keys[0].DeliveredAt), 30*time.Second, "replaced within 30 s of the sale")

			u, ok := b.sandbox.User(project, fresh)
			require.True(t, ok)
			require.Equal(t, 14, u.KeyDays, "the full key_days it was sold with, whatever the old key's timer showed")
			require.Equal(t, luarmor.NeverExpires, u.AuthExpire)
			require.False(t, u.IsBanned())
			require.Empty(t, u.Identifier)
			bad, ok := b.sandbox.User(project, old)
			require.True(t, ok)
			require.True(t, bad.IsBanned())
			require.Equal(t, "The key sold from stock was used or banned before its sale", bad.BanReason)
		})
	}
}

func TestStockKeyRunByItsBuyerAfterTheSaleIsKept(t *testing.T) {
	t.Parallel()
	for name, banned := range map[string]bool{"run": false, "run, then banned by the shop": true} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			// The buyer runs the key the moment it is shown, before its
			// check reads it: HWID bound, timer started, one execution.
			admin, sold, w := checkedStock(t, b, func(projectID, userKey string) error {
				if err := b.sandbox.Execute(projectID, userKey, "pc-of-the-buyer"); err != nil {
					return err
				}
				if banned {
					_, err := b.sandbox.SetUserState(projectID, userKey, sandbox.UserState{Banned: ptr(true), BanReason: "abuse"})
					return err
				}
				return nil
			})
			id := "cs_test_keptbuyer1"
			b.purchase(t, admin.River, id, 1)
			b.waitFulfilled(t, w, id)

			// The check found nothing before the sale and queued the
			// label, which rewrote the note: the check is done.
			waitUntil(t, w, "the kept key labelled", func() bool {
				u, ok := b.sandbox.User(project, sold())
				return ok && strings.Contains(u.Note, id)
			})
			rivertest.RequireInserted(context.Background(), t, b.driver(), jobs.StockKeyCheckArgs{},
				&rivertest.RequireInsertedOpts{State: rivertype.JobStateCompleted})
			r, err := postgres.ReissuesOfOrder(context.Background(), b.pool, id)
			require.NoError(t, err)
			require.Empty(t, r, "a key its buyer ran after the sale is not replaced")
			o, err := postgres.GetOrder(context.Background(), b.pool, id)
			require.NoError(t, err)
			require.Len(t, o.Keys, 1)
			require.Equal(t, sold(), o.Keys[0].UserKey)
			require.Equal(t, order.KeyActive, o.Keys[0].Status)
			u, _ := b.sandbox.User(project, sold())
			require.Equal(t, "pc-of-the-buyer", u.Identifier, "the buyer's key is as they left it")
			require.Equal(t, banned, u.IsBanned())
		})
	}
}
