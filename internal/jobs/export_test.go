package jobs

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/order"
)

// NewClientWithCrash is NewClient whose key worker runs crash between
// Luarmor's answer and the commit that records it; an error from crash
// stands for the process dying there.
func NewClientWithCrash(deps Deps, cfg Config, crash func(ctx context.Context) error) (*river.Client[pgx.Tx], error) {
	return newClient(deps, cfg, &CreateKeyWorker{afterCreate: crash}, &RefillStockWorker{}, &StockKeyCheckWorker{})
}

// NewClientWithRefillCrash is NewClient whose refill worker runs crash
// between Luarmor's answer and the commit that records the stock key.
func NewClientWithRefillCrash(deps Deps, cfg Config, crash func(ctx context.Context) error) (*river.Client[pgx.Tx], error) {
	return newClient(deps, cfg, &CreateKeyWorker{}, &RefillStockWorker{afterCreate: crash}, &StockKeyCheckWorker{})
}

// NewClientWithStockCheckHook is NewClient whose check of a key sold from
// stock runs beforeRead before it reads the key from Luarmor: what happens
// to the key between its sale and its check.
func NewClientWithStockCheckHook(deps Deps, cfg Config, beforeRead func(ctx context.Context, projectID, userKey string) error) (*river.Client[pgx.Tx], error) {
	return newClient(deps, cfg, &CreateKeyWorker{}, &RefillStockWorker{}, &StockKeyCheckWorker{beforeRead: beforeRead})
}

// FulfilFromRead runs, in tx, the fulfilment of a session as read from
// Stripe (with its line items when it was read paid, as readSession
// does), outside any job: what a job does once its read is in hand.
func FulfilFromRead(ctx context.Context, deps Deps, tx pgx.Tx, sess *stripe.CheckoutSession, items []*stripe.LineItem) (*order.Order, error) {
	var sales stockSales
	o, err := (&FulfilOrderWorker{Deps: deps}).fulfil(ctx, tx, &sessionRead{sess: sess, items: items}, &sales)
	if err != nil {
		return nil, err
	}
	return o, sales.finish(ctx, tx, deps)
}
