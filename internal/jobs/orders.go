package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/logging"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi"
)

// SessionReader reads a Checkout Session from Stripe.
type SessionReader interface {
	CheckoutSession(ctx context.Context, id string) (*stripe.CheckoutSession, error)
}

// Orders is the order workflow's one home: the HTTP API, the jobs, the
// start-up and the commands record, confirm and retry orders through it,
// so each step has one implementation.
type Orders struct {
	Pool   *pgxpool.Pool
	River  *river.Client[pgx.Tx]
	Stripe SessionReader
	Logger *slog.Logger
	// HWIDResetCooldown is the least time between two HWID resets of a
	// key (HWID_RESET_COOLDOWN); 0 means order.DefaultHWIDResetCooldown.
	HWIDResetCooldown time.Duration
}

// Confirm records a Checkout Session read from Stripe (the success page
// arrived before the webhook, as Stripe's fulfilment guide allows): a
// session Stripe knows is recorded and, if paid, fulfilled through the
// webhook's own path. A session Stripe does not know is ENOTFOUND; Stripe
// unreachable is EUNAVAILABLE.
func (s *Orders) Confirm(ctx context.Context, id string) (*order.Order, error) {
	sess, err := s.Stripe.CheckoutSession(ctx, id)
	if stripeapi.IsNotFound(err) {
		return nil, order.Errorf(order.ENOTFOUND, "no order for this checkout session")
	}
	if err != nil {
		return nil, &order.Error{Code: order.EUNAVAILABLE, Message: "could not confirm the order with Stripe; retry shortly"}
	}
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		_, err := RecordSession(ctx, tx, s.River, SessionDetails(sess))
		return err
	})
	if err != nil {
		return nil, err
	}
	s.Logger.InfoContext(ctx, "order confirmed with Stripe before its webhook", "order_ref", logging.OrderRef(id),
		"session_status", sess.Status, "payment_status", sess.PaymentStatus)
	return postgres.GetOrder(ctx, s.Pool, id)
}

// Retry fulfils a failed order again after its cause was fixed (a catalog
// entry, a Luarmor project, the Stripe key): its refused units are reset
// and re-planned from the current catalog by fulfil_order. An order whose
// payment failed cannot be retried: the customer must pay again.
func (s *Orders) Retry(ctx context.Context, id string) (*order.Order, error) {
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error { return s.retryTx(ctx, tx, id) })
	if err != nil {
		return nil, err
	}
	s.Logger.InfoContext(ctx, "order fulfilment retried", "order_ref", logging.OrderRef(id))
	return postgres.GetOrder(ctx, s.Pool, id)
}

func (s *Orders) retryTx(ctx context.Context, tx pgx.Tx, id string) error {
	if err := postgres.ResetFailures(ctx, tx, id); err != nil {
		return err
	}
	o, err := postgres.LockOrder(ctx, tx, id)
	if err != nil {
		return err
	}
	if _, err := s.River.InsertTx(ctx, tx, fulfilOrder(o), nil); err != nil {
		return fmt.Errorf("queueing the fulfilment of %s: %w", logging.OrderRef(id), err)
	}
	return nil
}

// RetryFailed retries up to limit orders that failed with code, oldest
// first, and returns how many it queued: after a restart with a fixed
// catalog, the orders that failed on a missing price are fulfilled again.
func (s *Orders) RetryFailed(ctx context.Context, code string, limit int) (int, error) {
	ids, err := postgres.FailedOrders(ctx, s.Pool, code, limit)
	if err != nil {
		return 0, err
	}
	for _, id := range ids {
		if err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error { return s.retryTx(ctx, tx, id) }); err != nil {
			return 0, fmt.Errorf("retrying order %s: %w", logging.OrderRef(id), err)
		}
	}
	return len(ids), nil
}
