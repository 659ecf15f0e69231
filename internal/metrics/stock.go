package metrics

import (
	"fulfiller/internal/postgres"

	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Where a unit of a stocked price got its key.
const (
	StockHit  = "hit"  // sold from stock, no Luarmor call
	StockMiss = "miss" // the stock was empty: made to order
)

var (
	stockKeysDesc = prometheus.NewDesc(Namespace+"_stock_keys",
		"Unsold stock keys by price (stocked prices of the catalog, else other) and status: ready to sell, or pending (being made); read from PostgreSQL at each scrape (the same on every replica).",
		[]string{"price", "status"}, nil)
	stockTargetDesc = prometheus.NewDesc(Namespace+"_stock_target",
		"The catalog's stock: N of each stocked price, the level refills keep.", []string{"price"}, nil)
)

func newStockCounters() (refills, sales *prometheus.CounterVec) {
	refills = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "stock_refills_total",
		Help: "Stock keys made (or found again after a crash) by this process's refills, by price.",
	}, []string{"price"})
	sales = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "stock_sales_total",
		Help: "Units of stocked prices delivered by this process, by price and outcome: hit (sold from stock) or miss (made to order).",
	}, []string{"price", "outcome"})
	return refills, sales
}

// StockRefilled counts a key made for the stock of priceID.
func (m *Metrics) StockRefilled(priceID string) {
	if m == nil {
		return
	}
	m.stockRefills.WithLabelValues(bounded(priceID, m.labels.StockPrices)).Inc()
}

// StockSale counts a unit of stocked price priceID delivered with outcome
// StockHit or StockMiss.
func (m *Metrics) StockSale(priceID, outcome string) {
	if m == nil {
		return
	}
	m.stockSales.WithLabelValues(bounded(priceID, m.labels.StockPrices), outcome).Inc()
}

// WatchStock adds each stocked price's stock level, read from PostgreSQL
// at each scrape, and its target, from targets (price ID to stock: N, the
// catalog's at the time of the scrape). Keys kept by a price no longer
// stocked are counted under other.
func (m *Metrics) WatchStock(pool *pgxpool.Pool, targets func() map[string]int) {
	m.registry.MustRegister(&stockCollector{pool: pool, targets: targets})
}

type stockCollector struct {
	pool    *pgxpool.Pool
	targets func() map[string]int
}

func (c *stockCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- stockKeysDesc
	ch <- stockTargetDesc
}

func (c *stockCollector) Collect(ch chan<- prometheus.Metric) {
	targets := c.targets()
	type level struct{ ready, pending float64 }
	levels := make(map[string]*level, len(targets))
	for price, n := range targets {
		levels[price] = &level{}
		ch <- prometheus.MustNewConstMetric(stockTargetDesc, prometheus.GaugeValue, float64(n), price)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	rows, err := c.pool.Query(ctx, postgres.StockLevelsSQL)
	if err == nil {
		var price string
		var ready, pending int64
		for rows.Next() {
			if err = rows.Scan(&price, &ready, &pending); err != nil {
				break
			}
			if _, ok := targets[price]; !ok {
				price = Other
			}
			if levels[price] == nil {
				levels[price] = &level{}
			}
			levels[price].ready += float64(ready)
			levels[price].pending += float64(pending)
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		ch <- prometheus.NewInvalidMetric(stockKeysDesc, fmt.Errorf("reading the stock: %w", err))
		return
	}
	for price, l := range levels {
		ch <- prometheus.MustNewConstMetric(stockKeysDesc, prometheus.GaugeValue, l.ready, price, "ready")
		ch <- prometheus.MustNewConstMetric(stockKeysDesc, prometheus.GaugeValue, l.pending, price, "pending")
	}
}
