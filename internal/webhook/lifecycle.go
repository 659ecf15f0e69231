package webhook

import (
	"context"
	"encoding/json"

	"github.com/jackc/pgx/v5"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/jobs"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// Handlers of the events after the sale. Each runs inside the transaction
// that records the event, so its work is queued exactly when the event is
// stored.

func decode[T any](event stripe.Event, what string) (*T, error) {
	var v T
	if err := json.Unmarshal(event.Data.Raw, &v); err != nil {
		return nil, &badEvent{"data.object is not " + what + ": " + err.Error()}
	}
	return &v, nil
}

func (h *Handler) policy() order.Policy {
	if h.Policy == (order.Policy{}) {
		return order.DefaultPolicy()
	}
	return h.Policy
}

// invoicePaid queues the renewal of a subscription invoice. The renewal
// job reads the invoice and all its lines from Stripe: the event carries
// only the first page of lines.
func invoicePaid(ctx context.Context, h *Handler, tx pgx.Tx, event stripe.Event) error {
	inv, err := decode[stripe.Invoice](event, "an invoice")
	if err != nil {
		return err
	}
	if inv.Subscription == nil || inv.Subscription.ID == "" {
		return nil
	}
	_, err = h.River.InsertTx(ctx, tx, jobs.RenewSubscriptionArgs{InvoiceID: inv.ID}, nil)
	return err
}

func chargeID(c *stripe.Charge) string {
	if c == nil {
		return ""
	}
	return c.ID
}

func paymentIntentID(p *stripe.PaymentIntent) string {
	if p == nil {
		return ""
	}
	return p.ID
}

// disputeCreated revokes the keys of a disputed payment.
func disputeCreated(ctx context.Context, h *Handler, tx pgx.Tx, event stripe.Event) error {
	d, err := decode[stripe.Dispute](event, "a dispute")
	if err != nil {
		return err
	}
	r, err := postgres.RecordRevocation(ctx, tx, postgres.Revocation{
		Source: "dispute", SourceID: d.ID, ChargeID: chargeID(d.Charge), PaymentIntentID: paymentIntentID(d.PaymentIntent),
		Action: order.ActionBlacklist, Reason: h.policy().DisputeBanReason,
	})
	if err != nil {
		return err
	}
	if r.Status != "active" {
		// Already closed in the shop's favour (events out of order).
		return nil
	}
	h.Logger.InfoContext(ctx, "dispute opened; revoking the payment's keys", "dispute_id", d.ID, "charge_id", chargeID(d.Charge))
	_, err = h.River.InsertTx(ctx, tx, jobs.ResolveRevocationArgs{RevocationID: r.ID}, nil)
	return err
}

// disputeClosed lifts the bans of a dispute the shop won.
func disputeClosed(ctx context.Context, h *Handler, tx pgx.Tx, event stripe.Event) error {
	d, err := decode[stripe.Dispute](event, "a dispute")
	if err != nil {
		return err
	}
	if d.Status != stripe.DisputeStatusWon {
		h.Logger.InfoContext(ctx, "dispute closed; keys stay revoked", "dispute_id", d.ID, "status", d.Status)
		return nil
	}
	r, err := postgres.LiftRevocation(ctx, tx, d.ID)
	if err != nil {
		return err
	}
	if r == nil {
		// Closed before its opening event arrived, or closed twice: record
		// it lifted so a late opening event revokes nothing.
		_, err := postgres.RecordRevocation(ctx, tx, postgres.Revocation{
			Source: "dispute", SourceID: d.ID, ChargeID: chargeID(d.Charge), PaymentIntentID: paymentIntentID(d.PaymentIntent),
			Action: order.ActionBlacklist, Reason: h.policy().DisputeBanReason, Status: "lifted",
		})
		return err
	}
	if !h.policy().UnbanWhenDisputeWon {
		h.Logger.InfoContext(ctx, "dispute won; bans kept (DISPUTE_WON_ACTION=keep)", "dispute_id", d.ID)
		return nil
	}
	h.Logger.InfoContext(ctx, "dispute won; lifting its bans", "dispute_id", d.ID)
	_, err = h.River.InsertTx(ctx, tx, jobs.LiftRevocationArgs{RevocationID: r.ID}, nil)
	return err
}

// chargeRefunded revokes the keys of a fully refunded payment; a partial
// refund is recorded (as the event) and changes nothing.
func chargeRefunded(ctx context.Context, h *Handler, tx pgx.Tx, event stripe.Event) error {
	ch, err := decode[stripe.Charge](event, "a charge")
	if err != nil {
		return err
	}
	if !ch.Refunded {
		h.Logger.InfoContext(ctx, "partial refund recorded; keys unchanged", "charge_id", ch.ID,
			"amount", ch.Amount, "amount_refunded", ch.AmountRefunded)
		return nil
	}
	p := h.policy()
	r, err := postgres.RecordRevocation(ctx, tx, postgres.Revocation{
		Source: "refund", SourceID: ch.ID, ChargeID: ch.ID, PaymentIntentID: paymentIntentID(ch.PaymentIntent),
		Action: p.RefundAction, Reason: p.RefundBanReason,
	})
	if err != nil || r.Action == order.ActionNone || r.Status != "active" {
		return err
	}
	h.Logger.InfoContext(ctx, "payment refunded; revoking its keys", "charge_id", ch.ID, "action", r.Action)
	_, err = h.River.InsertTx(ctx, tx, jobs.ResolveRevocationArgs{RevocationID: r.ID}, nil)
	return err
}

// subscriptionDeleted records the end of a subscription; its keys keep the
// time already paid, which their auth_expire already ends.
func subscriptionDeleted(ctx context.Context, h *Handler, tx pgx.Tx, event stripe.Event) error {
	sub, err := decode[stripe.Subscription](event, "a subscription")
	if err != nil {
		return err
	}
	return postgres.EndSubscription(ctx, tx, sub.ID)
}
