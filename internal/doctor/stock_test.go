package doctor_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/doctor"
)

func TestStockLevelWarnsBelowHalf(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.catalog.Put(priceOnce, catalog.Product{ProjectID: projectA, KeyDays: 0, Billing: catalog.BillingOneTime, Stock: 4})
	n := 0
	addStock := func(status string) {
		n++
		userKey := any(fmt.Sprintf("STOCK%d", n))
		if status == "pending" {
			userKey = nil
		}
		_, err := b.doctor.Pool.Exec(context.Background(), `INSERT INTO stock_keys (price_id, project_id, key_days, reference, status, user_key, made_at)
			VALUES ($1, $2, 0, $3, $4, $5, CASE WHEN $4 = 'ready' THEN now() END)`, priceOnce, projectA, fmt.Sprintf("fk_doctor%d", n), status, userKey)
		require.NoError(t, err)
	}
	addStock("ready")
	addStock("pending")
	requireOnly(t, b.run(t), "stock "+priceOnce, doctor.Warn, "1 of 4 keys ready (1 being made); last 24 h: 0 sold from stock, 0 made to order, 1 refilled: below half")

	addStock("ready")
	r := result(t, b.run(t), "stock "+priceOnce)
	require.Equal(t, doctor.Pass, r.Status, "half the stock is enough")
	require.Equal(t, "2 of 4 keys ready (1 being made); last 24 h: 0 sold from stock, 0 made to order, 2 refilled", r.Message)

	for _, r := range b.run(t) {
		require.NotEqual(t, "stock "+priceMonth, r.Check, "a price without stock has no stock line")
	}

	// The price now sells 30-day keys: the lifetime keys it made are no
	// use to its buyers.
	b.catalog.Put(priceOnce, catalog.Product{ProjectID: projectA, KeyDays: 30, Billing: catalog.BillingOneTime, Stock: 4})
	requireOnly(t, b.run(t), "stock "+priceOnce, doctor.Warn, "0 of 4 keys ready (0 being made); last 24 h: 0 sold from stock, 0 made to order, 2 refilled: below half")
}
