package budget_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/budget"
)

// fillWindow records n deliveries just finished, as other requests of the
// fleet would have left them.
func (f *fleet) fillWindow(t *testing.T, n int) {
	t.Helper()
	f.fillWindowWith(t, budget.ClassDeliver, n)
}

func (f *fleet) fillWindowWith(t *testing.T, c budget.Class, n int) {
	t.Helper()
	_, err := f.pool.Exec(context.Background(), `INSERT INTO luarmor_calls (taken_at, finished_at, class, replica, outcome)
		SELECT clock_timestamp(), clock_timestamp(), $2, 'elsewhere', 'ok' FROM generate_series(1, $1::int)`, n, c.String())
	require.NoError(t, err)
}

func (f *fleet) grantOrder(t *testing.T) []string {
	t.Helper()
	rows, err := f.pool.Query(context.Background(), `SELECT class FROM luarmor_calls WHERE replica <> 'elsewhere' ORDER BY id`)
	require.NoError(t, err)
	var classes []string
	for rows.Next() {
		var c string
		require.NoError(t, rows.Scan(&c))
		classes = append(classes, c)
	}
	require.NoError(t, rows.Err())
	return classes
}

func TestStockWaitsWhileTheBudgetHasNoSpareAndDeliveriesGoFirst(t *testing.T) {
	t.Parallel()
	f := setup(t, 2, 20, time.Minute)
	// A quarter of the window is spent: past it, a stock request would
	// bring pacing onto the next delivery, so it waits.
	f.fillWindow(t, 4)

	stockDone := make(chan error, 1)
	go func() {
		slot, err := f.replicas[0].budget.Acquire(budget.WithClass(context.Background(), budget.ClassStock))
		if err == nil {
			slot.Done(context.Background(), nil)
		}
		stockDone <- err
	}()
	// Polled: the budget tells of no request that starts to wait.
	require.Eventually(t, func() bool { return f.replicas[0].budget.Stats().Waiting[budget.ClassStock] == 1 },
		10*time.Second, 5*time.Millisecond)

	// Deliveries on both replicas are granted while the stock request waits.
	for _, r := range f.replicas {
		slot, err := r.budget.Acquire(budget.WithClass(context.Background(), budget.ClassDeliver))
		require.NoError(t, err)
		slot.Done(context.Background(), nil)
	}
	require.Equal(t, []string{"deliver", "deliver"}, f.grantOrder(t), "no stock request was granted before the deliveries")
	require.Equal(t, 1, f.replicas[0].budget.Stats().Waiting[budget.ClassStock], "the stock request still waits")
	require.Zero(t, count(t, f, `SELECT count(*) FROM luarmor_demand WHERE replica = 'replica-0'`),
		"a waiting stock request publishes no demand, so it never holds another replica back")

	// Once the window has room again, the stock request gets its slot.
	_, err := f.pool.Exec(context.Background(), `DELETE FROM luarmor_calls WHERE replica = 'elsewhere'`)
	require.NoError(t, err)
	require.NoError(t, <-stockDone)
	require.Equal(t, []string{"deliver", "deliver", "stock"}, f.grantOrder(t))
}

func TestStockYieldsToDemandPublishedByAnotherReplica(t *testing.T) {
	t.Parallel()
	f := setup(t, 1, 20, time.Minute)
	_, err := f.pool.Exec(context.Background(), `INSERT INTO luarmor_demand (replica, top_rank, expires_at)
		VALUES ('elsewhere', $1, clock_timestamp() + interval '1 hour')`, int(budget.ClassMaintenance))
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = f.replicas[0].budget.Acquire(budget.WithClass(ctx, budget.ClassStock))
	var wait *budget.WaitError
	require.ErrorAs(t, err, &wait, "no slot while even a maintenance request waits elsewhere")
	require.Empty(t, f.grantOrder(t))

	_, err = f.pool.Exec(context.Background(), `DELETE FROM luarmor_demand WHERE replica = 'elsewhere'`)
	require.NoError(t, err)
	slot, err := f.replicas[0].budget.Acquire(budget.WithClass(context.Background(), budget.ClassStock))
	require.NoError(t, err)
	slot.Done(context.Background(), nil)
	require.Equal(t, []string{"stock"}, f.grantOrder(t))
}

func count(t *testing.T, f *fleet, sql string) int {
	t.Helper()
	var n int
	require.NoError(t, f.pool.QueryRow(context.Background(), sql).Scan(&n))
	return n
}

// Stock calls made a moment before a burst of deliveries neither pace them
// nor bring pacing on sooner: only the hard limit counts them. With a
// window of an hour, a delivery paced behind a stock call would wait three
// minutes.
func TestStockCallsNeverPaceADelivery(t *testing.T) {
	t.Parallel()
	f := setup(t, 1, 20, time.Hour)
	// A quarter of the window spent on stock, all of it just now: counted
	// as paying calls, this would pace the next delivery.
	f.fillWindowWith(t, budget.ClassStock, 5)
	deliver := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		slot, err := f.replicas[0].budget.Acquire(budget.WithClass(ctx, budget.ClassDeliver))
		if err == nil {
			slot.Done(context.Background(), nil)
		}
		return err
	}
	require.NoError(t, deliver(10*time.Second), "granted without waiting out the stock's spacing")

	// Another replica's demand puts the fleet under contention: deliveries
	// are paced, but against each other, never against the stock.
	_, err := f.pool.Exec(context.Background(), `DELETE FROM luarmor_calls WHERE replica <> 'elsewhere'`)
	require.NoError(t, err)
	_, err = f.pool.Exec(context.Background(), `INSERT INTO luarmor_demand (replica, top_rank, expires_at)
		VALUES ('elsewhere', $1, clock_timestamp() + interval '1 hour')`, int(budget.ClassMaintenance))
	require.NoError(t, err)
	f.fillWindowWith(t, budget.ClassStock, 1)
	require.NoError(t, deliver(10*time.Second), "the first delivery under contention is not paced behind a stock call")
	var wait *budget.WaitError
	require.ErrorAs(t, deliver(300*time.Millisecond), &wait, "the next one is paced behind that delivery")

	// The hard limit counts every call: with the window full of stock
	// calls, a delivery waits.
	_, err = f.pool.Exec(context.Background(), `DELETE FROM luarmor_demand`)
	require.NoError(t, err)
	f.fillWindowWith(t, budget.ClassStock, 20)
	require.ErrorAs(t, deliver(300*time.Millisecond), &wait, "COUNT is never exceeded, whatever the class")
}

// At a budget of thousands of calls a second, a stock request that cannot
// have a slot still asks PostgreSQL at most every 25 ms, not every
// WINDOW/COUNT.
func TestAWaitingStockRequestAsksSeldomWhateverTheBudget(t *testing.T) {
	t.Parallel()
	f := setup(t, 1, 10000, time.Second)
	_, err := f.pool.Exec(context.Background(), `INSERT INTO luarmor_demand (replica, top_rank, expires_at)
		VALUES ('elsewhere', $1, clock_timestamp() + interval '1 hour')`, int(budget.ClassDeliver))
	require.NoError(t, err)

	before := f.replicas[0].budget.Stats().Queries
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = f.replicas[0].budget.Acquire(budget.WithClass(ctx, budget.ClassStock))
	require.Error(t, err, "no spare budget while another replica waits")
	asked := f.replicas[0].budget.Stats().Queries - before
	require.LessOrEqual(t, asked, int64(45), "about one question per 25 ms over a second, not one per 0.1 ms")
	require.Positive(t, asked)
}
