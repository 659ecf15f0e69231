package postgres

// The metrics scrape's queries (internal/metrics), registered so the plan
// test holds them to an index like the other periodic queries: a scrape
// comes every few seconds. The orders by status and the failed orders by
// code are read from the running counts (order_counts.go).
var (
	// StockLevelsSQL counts each price's stock keys ready and being made;
	// stock_keys_unsold_idx holds exactly these rows, never the keys sold.
	StockLevelsSQL = lookup("StockLevels",
		`SELECT price_id, count(*) FILTER (WHERE status = 'ready'), count(*) FILTER (WHERE status = 'pending')
		FROM stock_keys WHERE status <> 'sold' GROUP BY 1`)
)
