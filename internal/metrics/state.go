package metrics

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"fulfiller/internal/postgres"
)

// stateTimeout bounds the database reads of one scrape: during an outage
// the scrape answers the process's own metrics instead of hanging.
const stateTimeout = 3 * time.Second

var (
	replicasDesc = prometheus.NewDesc(Namespace+"_replicas_alive",
		"Replicas whose heartbeat is recent, read from PostgreSQL at each scrape (the same on every replica).", nil, nil)
	ordersFailedDesc = prometheus.NewDesc(Namespace+"_orders_failed",
		"Orders failed and waiting for an operator (retry or refund), by failure code, read from PostgreSQL at each scrape (the same on every replica).",
		[]string{"reason"}, nil)
	ordersDesc = prometheus.NewDesc(Namespace+"_orders",
		"Orders by status (pending, fulfilled, revoked, failed), read from PostgreSQL at each scrape (the same on every replica).",
		[]string{"status"}, nil)
	budgetWaitingDesc = prometheus.NewDesc(Namespace+"_luarmor_budget_waiting",
		"Luarmor requests of this process waiting for a budget slot, by class.", []string{"class"}, nil)
)

// WatchFleet adds the fleet's state, read from PostgreSQL at each scrape:
// replicas alive (a heartbeat within staleAfter), orders by status and
// failed orders by reason, the last two from the running counts of
// migrations 0052 and 0058, whose reads do not grow with the orders table. All are gauges of the database's state, so a job that runs twice
// or a replica that restarts never counts an order twice.
func (m *Metrics) WatchFleet(pool *pgxpool.Pool, staleAfter time.Duration) {
	m.registry.MustRegister(&fleetCollector{pool: pool, staleAfter: staleAfter,
		failureCodes: m.labels.FailureCodes, orderStatuses: m.labels.OrderStatuses})
}

type fleetCollector struct {
	pool          *pgxpool.Pool
	staleAfter    time.Duration
	failureCodes  []string
	orderStatuses []string
}

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- replicasDesc
	ch <- ordersFailedDesc
	ch <- ordersDesc
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	var alive int64
	err := c.pool.QueryRow(ctx, `SELECT count(*) FROM replicas WHERE heartbeat_at > now() - $1::interval`, c.staleAfter).Scan(&alive)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(replicasDesc, fmt.Errorf("reading replicas: %w", err))
	} else {
		ch <- prometheus.MustNewConstMetric(replicasDesc, prometheus.GaugeValue, float64(alive))
	}
	c.collectOrders(ctx, ch)

	failed := make(map[string]float64, len(c.failureCodes)+1)
	for _, code := range c.failureCodes {
		failed[code] = 0
	}
	counts, err := postgres.FailedOrderCounts(ctx, c.pool)
	for code, n := range counts {
		failed[bounded(code, c.failureCodes)] += float64(n)
	}
	if err != nil {
		ch <- prometheus.NewInvalidMetric(ordersFailedDesc, fmt.Errorf("reading failed orders: %w", err))
		return
	}
	for reason, n := range failed {
		ch <- prometheus.MustNewConstMetric(ordersFailedDesc, prometheus.GaugeValue, n, reason)
	}
}

// WatchBudget adds the requests waiting for a Luarmor budget slot, read
// from waiting (class name to count) at each scrape.
func (m *Metrics) WatchBudget(waiting func() map[string]int) {
	m.registry.MustRegister(&budgetCollector{waiting: waiting})
}

type budgetCollector struct{ waiting func() map[string]int }

func (c *budgetCollector) Describe(ch chan<- *prometheus.Desc) { ch <- budgetWaitingDesc }

func (c *budgetCollector) Collect(ch chan<- prometheus.Metric) {
	for class, n := range c.waiting() {
		ch <- prometheus.MustNewConstMetric(budgetWaitingDesc, prometheus.GaugeValue, float64(n), class)
	}
}

// collectOrders reads the orders by status from the running counts of
// migration 0052: a read whose cost does not grow with the orders table.
func (c *fleetCollector) collectOrders(ctx context.Context, ch chan<- prometheus.Metric) {
	counts, err := postgres.OrderCounts(ctx, c.pool)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(ordersDesc, fmt.Errorf("reading orders by status: %w", err))
		return
	}
	byStatus := make(map[string]float64, len(c.orderStatuses)+1)
	for _, s := range c.orderStatuses {
		byStatus[s] = 0
	}
	for status, n := range counts {
		byStatus[bounded(status, c.orderStatuses)] += float64(n)
	}
	for status, n := range byStatus {
		ch <- prometheus.MustNewConstMetric(ordersDesc, prometheus.GaugeValue, n, status)
	}
}
