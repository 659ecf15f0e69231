package app_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/stripeapi/stripefake"
)

func TestMetricsReportTheStock(t *testing.T) {
	t.Parallel()
	b := setupStock(t, 3, withMetrics(nil))
	price := map[string]string{"price": priceStocked}
	ready := with(price, "status", "ready")
	hits, misses := with(price, "outcome", "hit"), with(price, "outcome", "miss")

	before := b.scrape(t)
	require.Equal(t, 3.0, before.value("fulfiller_stock_target", price))
	require.Equal(t, 3.0, before.value("fulfiller_stock_keys", ready), "the level is read from the database")
	require.Zero(t, before.value("fulfiller_stock_keys", with(price, "status", "pending")))
	require.Equal(t, 3.0, before.value("fulfiller_stock_refills_total", price), "the start-up refill made three keys")
	require.Zero(t, before.value("fulfiller_stock_sales_total", hits), "the series exist before the first sale")
	require.Zero(t, before.value("fulfiller_stock_sales_total", misses))

	// One unit, served from stock; the refill replaces its key.
	_, o := b.buy(t, stripefake.Item{PriceID: priceStocked, Quantity: 1})
	require.Len(t, o.Keys, 1)
	after := b.waitMetric(t, before, "fulfiller_stock_sales_total", hits, 1)
	require.Zero(t, after.value("fulfiller_stock_sales_total", misses)-before.value("fulfiller_stock_sales_total", misses))
	b.waitStock(t, 3)
	after = b.waitMetric(t, before, "fulfiller_stock_refills_total", price, 1)
	require.Equal(t, 3.0, after.value("fulfiller_stock_keys", ready))
	require.Equal(t, float64(b.creates()), after.value("fulfiller_stock_refills_total", price),
		"every create so far was a refill's")

	// Ten units outrun the stock: each is a hit or a miss, as the database
	// records it.
	before = after
	s, o := b.buy(t, stripefake.Item{PriceID: priceStocked, Quantity: 10})
	require.Len(t, o.Keys, 10)
	sold := b.Count(t, `SELECT count(*) FROM stock_keys s JOIN order_keys k ON k.id = s.order_key_id WHERE k.checkout_session_id = $1`, s.ID)
	b.waitMetric(t, before, "fulfiller_stock_sales_total", hits, float64(sold))
	after = b.waitMetric(t, before, "fulfiller_stock_sales_total", misses, float64(10-sold))
	require.Equal(t, 10.0, after.value("fulfiller_keys_delivered_total", nil)-before.value("fulfiller_keys_delivered_total", nil))
	requireNothingIdentifying(t, after, s, o.Keys[0].UserKey)
}
