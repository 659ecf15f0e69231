package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
)

// stockSaleBundle is a small stock of one (project, key_days) beside decoy
// keys of a neighbouring key_days and project, and units waiting for keys.
type stockSaleBundle struct {
	pool   *pgxpool.Pool
	units  []int64          // pending units of (project_p, 7)
	ready  map[string]int64 // the (project_p, 7) stock: user key -> stock key ID
	decoys map[string]int64 // keys of (project_p, 30) and (project_q, 7)
}

const (
	saleReady = 4  // ready keys of the units' own project and key_days
	saleUnits = 12 // units that want one, three times as many
)

func setupStockSale(t *testing.T) *stockSaleBundle {
	t.Helper()
	ctx := context.Background()
	// A connection for every sale at once, as each replica has its own.
	cfg, err := pgxpool.ParseConfig(postgrestest.NewURL(t))
	require.NoError(t, err)
	cfg.MaxConns = saleUnits + 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	b := &stockSaleBundle{pool: pool, ready: map[string]int64{}, decoys: map[string]int64{}}
	addStock := func(tx pgx.Tx, into map[string]int64, priceID, projectID string, keyDays, n int) error {
		for i := range n {
			userKey := fmt.Sprintf("STOCK_%s_%d_%d", projectID, keyDays, i)
			var id int64
			err := tx.QueryRow(ctx, `INSERT INTO stock_keys (price_id, project_id, key_days, reference, status, user_key, made_at)
				VALUES ($1, $2, $3, $4, 'ready', $5, now()) RETURNING id`,
				priceID, projectID, keyDays, "fk_"+userKey, userKey).Scan(&id)
			if err != nil {
				return err
			}
			into[userKey] = id
		}
		return nil
	}
	tx(t, b.pool, func(tx pgx.Tx) error {
		if err := addStock(tx, b.ready, "price_p7", "project_p", 7, saleReady); err != nil {
			return err
		}
		if err := addStock(tx, b.decoys, "price_p30", "project_p", 30, 3); err != nil {
			return err
		}
		if err := addStock(tx, b.decoys, "price_q7", "project_q", 7, 3); err != nil {
			return err
		}
		// One unit per order: a sale locks its order, so units of distinct
		// orders are what separate replicas sell side by side.
		for i := range saleUnits {
			id := fmt.Sprintf("cs_test_stocksale%02d", i)
			if _, err := postgres.UpsertOrder(ctx, tx, order.SessionDetails{CheckoutSessionID: id, Mode: "payment",
				PaymentStatus: "paid", SessionStatus: "complete", PaymentIntentID: "pi_" + id}); err != nil {
				return err
			}
			if err := postgres.AddUnits(ctx, tx, id, []order.Line{{LineItemID: "li_1", Quantity: 1, PriceID: "price_p7",
				ProjectID: "project_p", KeyDays: 7}}); err != nil {
				return err
			}
			var keyID int64
			if err := tx.QueryRow(ctx, `SELECT id FROM order_keys WHERE checkout_session_id = $1`, id).Scan(&keyID); err != nil {
				return err
			}
			b.units = append(b.units, keyID)
		}
		return nil
	})
	return b
}

// TestStockSaleAcrossReplicas sells a stock of four keys to twelve units at
// once, each sale in its own transaction as separate replicas would run
// it. Every sale holds its taken key until all twelve have tried, so each
// one meets the others' locked rows: the stock must skip them, never wait
// on them and never hand one out twice.
func TestStockSaleAcrossReplicas(t *testing.T) {
	t.Parallel()
	b := setupStockSale(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var tried sync.WaitGroup
	tried.Add(len(b.units))
	allTried := make(chan struct{})
	go func() { tried.Wait(); close(allTried) }()

	sold := make([]string, len(b.units))
	errs := make([]error, len(b.units))
	var done sync.WaitGroup
	for i, unit := range b.units {
		done.Add(1)
		go func() {
			defer done.Done()
			errs[i] = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
				userKey, priceID, err := postgres.SellStockKey(ctx, tx, unit, nil)
				tried.Done()
				if err != nil {
					return fmt.Errorf("unit %d: %w", unit, err)
				}
				select { // hold the key (and its row lock) while the others look
				case <-allTried:
				case <-ctx.Done():
					return fmt.Errorf("unit %d waited for the other sales: %w", unit, ctx.Err())
				}
				if userKey == "" {
					return nil
				}
				if priceID != "price_p7" {
					return fmt.Errorf("unit %d was sold a key of price %s", unit, priceID)
				}
				sold[i] = userKey
				return nil
			})
		}()
	}
	done.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}

	seen := map[string]bool{}
	for _, k := range sold {
		if k == "" {
			continue
		}
		require.False(t, seen[k], "key %s sold twice", k)
		seen[k] = true
		require.Contains(t, b.ready, k, "a unit of (project_p, 7) got a key of another project or key_days")
	}
	require.Len(t, seen, saleReady, "every ready key is sold, once")

	ready, pending, err := postgrestest.StockLevel(ctx, b.pool, "price_p7")
	require.NoError(t, err)
	require.Zero(t, ready, "the stock is empty, not negative")
	require.Zero(t, pending)
	var soldRows int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM stock_keys WHERE status = 'sold'`).Scan(&soldRows))
	require.Equal(t, saleReady, soldRows)

	for _, priceID := range []string{"price_p30", "price_q7"} {
		ready, _, err := postgrestest.StockLevel(ctx, b.pool, priceID)
		require.NoError(t, err)
		require.Equal(t, 3, ready, "the decoys of %s are untouched", priceID)
	}

	delivered := 0
	for i, unit := range b.units {
		k, err := postgres.GetKey(ctx, b.pool, unit)
		require.NoError(t, err)
		s, err := postgres.StockKeyOf(ctx, b.pool, unit)
		require.NoError(t, err)
		if sold[i] == "" {
			require.Equal(t, order.KeyPending, k.Status, "unit %d is left to be made to order", unit)
			require.Empty(t, k.UserKey)
			require.Nil(t, s)
			continue
		}
		delivered++
		require.Equal(t, sold[i], k.UserKey, "unit %d holds the key it was sold", unit)
		require.NotNil(t, s)
		require.Equal(t, b.ready[sold[i]], s.ID, "the stock row records the unit it was sold to")
	}
	require.Equal(t, saleReady, delivered)

	// One unit left over is made to order: the record says 4 sold from
	// stock and 1 made at the sale.
	for i, unit := range b.units {
		if sold[i] == "" {
			tx(t, b.pool, func(tx pgx.Tx) error { return postgres.DeliverKey(ctx, tx, unit, "MADE-TO-ORDER", nil, false) })
			break
		}
	}
	day, err := postgres.StockActivitySince(ctx, b.pool, "price_p7", time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.Equal(t, saleReady, day.Sold)
	require.Equal(t, 1, day.MadeToOrder)
}

// A create is claimed for a unit while its sale waits on the unit's row
// (the claim's transaction holds it): once the claim commits, the sale
// finds the unit no longer one the stock may serve and sells nothing, so
// the unit never gets a stock key besides the key its create makes.
func TestStockSaleStopsForACreateClaimedWhileItWaits(t *testing.T) {
	t.Parallel()
	b := setupStockSale(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	unit := b.units[0]

	claim, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	defer claim.Rollback(ctx) //nolint:errcheck // no-op after Commit
	_, err = postgres.ClaimCreate(ctx, claim, unit, "replica-a", time.Minute, true)
	require.NoError(t, err)

	type sale struct {
		userKey string
		err     error
	}
	done := make(chan sale, 1)
	go func() {
		var s sale
		s.err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			var err error
			s.userKey, _, err = postgres.SellStockKey(ctx, tx, unit, nil)
			return err
		})
		done <- s
	}()
	// The sale is waiting for the claim's row lock.
	require.Eventually(t, func() bool {
		var waiting int
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting))
		return waiting > 0
	}, 10*time.Second, 5*time.Millisecond, "the sale waits on the unit's row")
	require.NoError(t, claim.Commit(ctx))

	s := <-done
	require.NoError(t, s.err)
	require.Empty(t, s.userKey, "no stock key for a unit whose create was claimed")
	ready, _, err := postgrestest.StockLevel(ctx, b.pool, "price_p7")
	require.NoError(t, err)
	require.Equal(t, saleReady, ready, "the stock is whole")
	k, err := postgres.GetKey(ctx, b.pool, unit)
	require.NoError(t, err)
	require.Empty(t, k.UserKey)
	require.Equal(t, 1, k.CreateAttempts)
}
