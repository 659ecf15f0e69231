package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// tx runs fn in a transaction of pool, failing the test on an error.
func tx(t *testing.T, pool *pgxpool.Pool, fn func(pgx.Tx) error) {
	t.Helper()
	require.NoError(t, pgx.BeginFunc(context.Background(), pool, fn))
}

// replanOrder and replanned serve the replan tests of orders_test.go and
// migrate_test.go.
//
// replanOrder records a paid order of two lines: two units of project
// "typo" and one of project "good".
func replanOrder(t *testing.T, pool *pgxpool.Pool, id string) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	units := map[string]int64{}
	tx(t, pool, func(tx pgx.Tx) error {
		_, err := postgres.UpsertOrder(ctx, tx, order.SessionDetails{CheckoutSessionID: id, Mode: "payment",
			PaymentStatus: "paid", SessionStatus: "complete", PaymentIntentID: "pi_" + id})
		if err != nil {
			return err
		}
		err = postgres.AddUnits(ctx, tx, id, []order.Line{
			{LineItemID: "li_typo", Quantity: 2, PriceID: "price_typo", ProjectID: "typo", KeyDays: 7},
			{LineItemID: "li_good", Quantity: 1, PriceID: "price_good", ProjectID: "good", KeyDays: 30},
		})
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT line_item_id || '/' || unit, id FROM order_keys WHERE checkout_session_id = $1`, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var name string
			var keyID int64
			if err := rows.Scan(&name, &keyID); err != nil {
				return err
			}
			units[name] = keyID
		}
		return rows.Err()
	})
	return units
}

// replanned reads the replan mark of each unit of order id.
func replanned(t *testing.T, pool *pgxpool.Pool, id string) map[int64]bool {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id, replan FROM order_keys WHERE checkout_session_id = $1`, id)
	require.NoError(t, err)
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var keyID int64
		var replan bool
		require.NoError(t, rows.Scan(&keyID, &replan))
		out[keyID] = replan
	}
	require.NoError(t, rows.Err())
	return out
}
