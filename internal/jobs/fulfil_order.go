package jobs

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi"
)

// FulfilOrderArgs fulfils a Checkout Session: it reads the session and its
// line items from Stripe and records one key to create per purchased unit.
type FulfilOrderArgs struct {
	CheckoutSessionID string `json:"checkout_session_id"`
}

func (FulfilOrderArgs) Kind() string { return "fulfil_order" }

func (FulfilOrderArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		Queue:      QueueDefault,
		UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: inFlight},
	}
}

// FulfilOrderWorker works FulfilOrderArgs.
type FulfilOrderWorker struct {
	river.WorkerDefaults[FulfilOrderArgs]
	Deps
}

func (w *FulfilOrderWorker) Work(ctx context.Context, job *river.Job[FulfilOrderArgs]) error {
	id := job.Args.CheckoutSessionID
	sess, err := w.Stripe.CheckoutSession(ctx, id)
	if err != nil {
		if stripeapi.IsNotFound(err) {
			return river.JobCancel(fmt.Errorf("checkout session %s does not exist in this Stripe account: %w", id, err))
		}
		return err
	}
	details := SessionDetails(sess)

	var items []*stripe.LineItem
	if order.Paid(details.PaymentStatus) {
		if items, err = w.Stripe.LineItems(ctx, id); err != nil {
			return err
		}
	}
	units, unknown := w.plan(items)

	tx, err := w.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck

	if _, err := postgres.UpsertOrder(ctx, tx, details); err != nil {
		return err
	}
	o, err := postgres.LockOrder(ctx, tx, id)
	if err != nil {
		return err
	}
	switch {
	case !order.Paid(details.PaymentStatus):
		// Not paid yet: the async_payment_succeeded event (or a visit to
		// the success page) starts fulfilment again once it is.
		w.Logger.InfoContext(ctx, "order awaits payment", "checkout_session_id", id, "payment_status", sess.PaymentStatus)
	case o.Status == order.StatusRevoked:
		// The payment was taken back before the keys were made: none is.
		w.Logger.InfoContext(ctx, "order revoked before fulfilment; no key created", "checkout_session_id", id)
	case !o.ItemsLoaded && len(unknown) > 0:
		reason := fmt.Sprintf("price %s is not in the catalog: add it to CATALOG_FILE and restart; the order is then fulfilled again",
			strings.Join(unknown, ", "))
		if err := postgres.FailOrder(ctx, tx, id, order.FailureUnknownPrice, reason); err != nil {
			return err
		}
		// The job completes with the failure recorded (in one commit), so
		// a retry requested right after sees no job in flight.
		w.Logger.ErrorContext(ctx, "order cannot be fulfilled", "checkout_session_id", id, "reason", reason)
	default:
		// Loaded orders are not planned again (the catalog may have
		// changed since); their pending keys are queued again, which
		// River's uniqueness makes harmless.
		if !o.ItemsLoaded {
			if err := postgres.AddKeys(ctx, tx, id, units); err != nil {
				return err
			}
		}
		ids, err := postgres.PendingKeyIDs(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := insertCreateKeyJobs(ctx, tx, ids); err != nil {
			return err
		}
		w.Logger.InfoContext(ctx, "order expanded", "checkout_session_id", id, "units", len(units), "to_create", len(ids))
	}
	if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// plan turns line items into units, one per purchased quantity, and lists
// the prices missing from the catalog.
func (w *FulfilOrderWorker) plan(items []*stripe.LineItem) ([]postgres.Unit, []string) {
	var units []postgres.Unit
	missing := map[string]bool{}
	for _, it := range items {
		priceID := ""
		if it.Price != nil {
			priceID = it.Price.ID
		}
		product, ok := w.Catalog.Lookup(priceID)
		if !ok {
			if priceID == "" {
				priceID = "(line item " + it.ID + " without a price)"
			}
			missing[priceID] = true
			continue
		}
		for n := 1; n <= int(it.Quantity); n++ {
			units = append(units, postgres.Unit{LineItemID: it.ID, Unit: n, PriceID: priceID,
				ProjectID: product.ProjectID, KeyDays: product.KeyDays})
		}
	}
	unknown := make([]string, 0, len(missing))
	for p := range missing {
		unknown = append(unknown, p)
	}
	sort.Strings(unknown)
	return units, unknown
}

func insertCreateKeyJobs(ctx context.Context, tx pgx.Tx, ids []int64) error {
	args := make([]river.JobArgs, len(ids))
	for i, id := range ids {
		args[i] = CreateKeyArgs{OrderKeyID: id}
	}
	return insertMany(ctx, tx, args...)
}

// SessionDetails extracts what the order records from a Checkout Session.
func SessionDetails(s *stripe.CheckoutSession) postgres.SessionDetails {
	d := postgres.SessionDetails{
		CheckoutSessionID: s.ID,
		Mode:              string(s.Mode),
		PaymentStatus:     string(s.PaymentStatus),
		CustomerEmail:     s.CustomerEmail,
	}
	if s.CustomerDetails != nil && s.CustomerDetails.Email != "" {
		d.CustomerEmail = s.CustomerDetails.Email
	}
	if s.Customer != nil {
		d.CustomerID = s.Customer.ID
	}
	if s.PaymentIntent != nil {
		d.PaymentIntentID = s.PaymentIntent.ID
	}
	if s.Subscription != nil {
		d.SubscriptionID = s.Subscription.ID
	}
	if s.Invoice != nil {
		d.InvoiceID = s.Invoice.ID
	}
	for _, f := range s.CustomFields {
		if f != nil && f.Key == "discord_id" && f.Text != nil {
			d.DiscordID = strings.TrimSpace(f.Text.Value)
		}
	}
	return d
}

// RecordSession records a Checkout Session's order inside tx and, when it is
// paid and not yet expanded into keys, enqueues its fulfilment in the same
// transaction. Webhooks and the order API's success-page path both use it,
// so however often and in whatever order they arrive, fulfilment is the
// same idempotent job.
func RecordSession(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], d postgres.SessionDetails) (*order.Order, error) {
	// A dispute or refund may have arrived before the order: apply it now.
	if err := postgres.LockPayment(ctx, tx, d.PaymentIntentID, d.SubscriptionID); err != nil {
		return nil, err
	}
	o, err := postgres.UpsertOrder(ctx, tx, d)
	if err != nil {
		return nil, err
	}
	if o.Status != order.StatusRevoked {
		rev, err := postgres.ActiveRevocationFor(ctx, tx, o.PaymentIntentID, o.SubscriptionID)
		if err != nil {
			return nil, err
		}
		if rev != nil {
			if err := postgres.RevokeOrder(ctx, tx, o.CheckoutSessionID, rev.ID); err != nil {
				return nil, err
			}
			o.Status, o.RevocationID = order.StatusRevoked, rev.ID
		}
	}
	if order.Paid(o.PaymentStatus) && !o.ItemsLoaded && o.Status == order.StatusPending {
		if _, err := client.InsertTx(ctx, tx, FulfilOrderArgs{CheckoutSessionID: d.CheckoutSessionID}, nil); err != nil {
			return nil, fmt.Errorf("enqueueing fulfilment of %s: %w", d.CheckoutSessionID, err)
		}
	}
	return o, nil
}
