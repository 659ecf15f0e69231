package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"fulfiller/internal/logging"
	"fulfiller/internal/order"
	"fulfiller/internal/outbound"
	"fulfiller/internal/postgres"
)

// Events out (internal/outbound): each thing the shop's own tools are told
// of is recorded with recordEvent in the transaction that records what
// happened, beside its lifecycle email, as one outbound_events row unique
// per (type, subject) and one outbound_deliveries row per destination; a
// repeated webhook or a job run twice finds the row and queues nothing. A
// deliver_event job per delivery then posts it, at least once: a run cut
// off mid-POST (a timeout, a killed replica) posts again, with the same
// event ID, which receivers deduplicate on.

// QueueOutbound is the queue of deliveries: a slow receiver holds these
// workers, never the default queue's.
const QueueOutbound = "outbound"

// outboundMaxAttempts is how often a delivery is tried before it is
// recorded failed, on purpose not the service's 100: with RetryDelay, 20
// fast tries within about three minutes ride out a receiver's restart,
// then doubling waits up to an hour and hourly tries cover about a day of
// the receiver being down. After that the operator replays it.
const outboundMaxAttempts = 48

// outboundClient posts every delivery; it follows no redirect.
var outboundClient = outbound.NewClient()

// recordEvent records the event typ about subject, of order o (nil: none),
// its data made from o and then fill, and queues its deliveries, in tx,
// once. It does nothing when no destination takes typ.
func recordEvent(ctx context.Context, tx pgx.Tx, deps Deps, typ outbound.EventType, subject string, o *order.Order, fill func(*outbound.Data)) error {
	to := deps.Outbound.Destinations(typ)
	if len(to) == 0 {
		return nil
	}
	var data outbound.Data
	var orderID int64
	if o != nil {
		data, orderID = orderEventData(o), o.ID
	}
	if fill != nil {
		fill(&data)
	}
	now := time.Now
	if deps.Now != nil {
		now = deps.Now
	}
	e := outbound.Event{ID: outbound.NewEventID(), Type: typ, Created: now().Unix(), Data: data}
	ids, err := postgres.RecordOutboundEvent(ctx, tx, e, subject, orderID, to)
	if err != nil || len(ids) == 0 {
		return err
	}
	args := make([]river.JobArgs, len(ids))
	for i, id := range ids {
		args[i] = DeliverEventArgs{DeliveryID: id, EventType: string(typ), OrderRef: data.OrderRef}
	}
	deps.Logger.InfoContext(ctx, "event recorded for delivery", "type", typ, "event_id", e.ID, "order_ref", data.OrderRef, "deliveries", len(ids))
	return insertMany(ctx, tx, args...)
}

// orderEventData is what every event about o says of it: its reference,
// product, amount, buyer and the last characters of its delivered keys.
func orderEventData(o *order.Order) outbound.Data {
	d := outbound.Data{OrderRef: logging.OrderRef(o.CheckoutSessionID), Amount: o.AmountTotal, Currency: o.Currency, Email: o.CustomerEmail}
	var products []string
	for _, l := range o.Lines {
		if name := cmp.Or(l.ProductName, l.PriceID); name != "" && !slices.Contains(products, name) {
			products = append(products, name)
		}
	}
	if len(products) == 0 {
		for _, k := range o.Keys {
			if !slices.Contains(products, k.PriceID) {
				products = append(products, k.PriceID)
			}
		}
	}
	d.Product = strings.Join(products, ", ")
	for _, k := range o.Keys {
		if last4 := outbound.KeyLast4(k.UserKey); last4 != "" {
			d.Keys = append(d.Keys, last4)
		}
	}
	return d
}

// eventOrderFulfilled records order.fulfilled once the caller's
// transaction fulfilled the order (a sale, on Discord). The caller holds
// the order's lock.
func eventOrderFulfilled(ctx context.Context, tx pgx.Tx, deps Deps, sessionID string) error {
	if len(deps.Outbound.Destinations(outbound.OrderFulfilled)) == 0 {
		return nil
	}
	o, err := postgres.GetOrder(ctx, tx, sessionID)
	if err != nil || o.Status != order.StatusFulfilled {
		return err
	}
	return recordEvent(ctx, tx, deps, outbound.OrderFulfilled, fmt.Sprintf("order:%d", o.ID), o, nil)
}

// failOrder marks the order failed (postgres.FailOrder) and records
// order.failed, once per order and failure code.
func failOrder(ctx context.Context, tx pgx.Tx, deps Deps, sessionID, code, reason string) error {
	if err := postgres.FailOrder(ctx, tx, sessionID, code, reason); err != nil {
		return err
	}
	return eventOrderFailed(ctx, tx, deps, sessionID)
}

// eventOrderFailed records order.failed of an order the caller's
// transaction failed, once per order and failure code.
func eventOrderFailed(ctx context.Context, tx pgx.Tx, deps Deps, sessionID string) error {
	if len(deps.Outbound.Destinations(outbound.OrderFailed)) == 0 {
		return nil
	}
	o, err := postgres.GetOrder(ctx, tx, sessionID)
	if err != nil || o.Status != order.StatusFailed {
		return err
	}
	return recordEvent(ctx, tx, deps, outbound.OrderFailed, fmt.Sprintf("order:%d:%s", o.ID, o.FailureCode), o, func(d *outbound.Data) {
		d.FailureCode, d.Reason = o.FailureCode, logging.ScrubSessionIDs(o.FailureReason)
	})
}

// eventKeysRevoked records key.revoked for o, as it was before r revoked
// it: as with its email, only an order whose keys were delivered, and not
// an inquiry's suspension.
func eventKeysRevoked(ctx context.Context, tx pgx.Tx, deps Deps, o *order.Order, r *order.Revocation) error {
	if r.Inquiry || o.Status != order.StatusFulfilled {
		return nil
	}
	return recordEvent(ctx, tx, deps, outbound.KeyRevoked, fmt.Sprintf("revocation:%d:order:%d", r.ID, o.ID), o, func(d *outbound.Data) {
		d.Source, d.Reason = string(r.Source), r.Reason
	})
}

// eventKeyReissued records key.reissued of reissue r, which replaced old
// with newKey.
func eventKeyReissued(ctx context.Context, tx pgx.Tx, deps Deps, r *postgres.Reissue, old, newKey *order.Key) error {
	if len(deps.Outbound.Destinations(outbound.KeyReissued)) == 0 {
		return nil
	}
	o, err := postgres.GetOrder(ctx, tx, newKey.CheckoutSessionID)
	if err != nil {
		return err
	}
	return recordEvent(ctx, tx, deps, outbound.KeyReissued, fmt.Sprintf("reissue:%d", r.ID), o, func(d *outbound.Data) {
		d.Keys, d.OldKey, d.NewKey = nil, outbound.KeyLast4(old.UserKey), outbound.KeyLast4(newKey.UserKey)
	})
}

// eventKeyExpiring records key.expiring of key keyID of an order, which
// will not renew and stops working at expire (unix seconds), once per key
// and expiry.
func eventKeyExpiring(ctx context.Context, tx pgx.Tx, deps Deps, sessionID string, keyID, expire int64) error {
	if len(deps.Outbound.Destinations(outbound.KeyExpiring)) == 0 {
		return nil
	}
	o, err := postgres.GetOrder(ctx, tx, sessionID)
	if err != nil {
		return err
	}
	return recordEvent(ctx, tx, deps, outbound.KeyExpiring, postgres.ExpiryNoticeEvent(keyID, expire), o, func(d *outbound.Data) {
		d.Keys = nil
		for _, k := range o.Keys {
			if k.ID == keyID {
				d.Keys = []string{outbound.KeyLast4(k.UserKey)}
			}
		}
		d.ExpiresAt = &expire
	})
}

// eventSubscriptionEnded records subscription.ended of o's subscription
// once Stripe ended it, once per subscription, with when its keys stop. An
// order whose keys were never all delivered had no subscription to end.
func eventSubscriptionEnded(ctx context.Context, tx pgx.Tx, deps Deps, o *order.Order, subscriptionID string) error {
	if len(deps.Outbound.Destinations(outbound.SubscriptionEnded)) == 0 || (o.Status != order.StatusFulfilled && o.Status != order.StatusRevoked) {
		return nil
	}
	end, err := postgres.SubscriptionKeysEnd(ctx, tx, o.CheckoutSessionID)
	if err != nil {
		return err
	}
	return recordEvent(ctx, tx, deps, outbound.SubscriptionEnded, "subscription:"+subscriptionID, o, func(d *outbound.Data) {
		d.SubscriptionID = subscriptionID
		if end > 0 {
			d.ExpiresAt = &end
		}
	})
}

// DeliverEventArgs posts one delivery of an event (an outbound_deliveries
// row) to its destination. Replay is the operator's replay it serves (0:
// the first delivery); EventType and OrderRef are for people reading the
// job.
type DeliverEventArgs struct {
	DeliveryID int64  `json:"delivery_id" river:"unique"`
	Replay     int    `json:"replay" river:"unique"`
	EventType  string `json:"event_type"`
	OrderRef   string `json:"order_ref,omitempty"`
}

func (DeliverEventArgs) Kind() string { return "deliver_event" }

func (DeliverEventArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueOutbound, MaxAttempts: outboundMaxAttempts, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// DeliverEventWorker works DeliverEventArgs: one POST per attempt, each
// recorded in the delivery's log. A 2xx delivers it; no answer, a 5xx, 408
// or 429 is retried with the service's backoff (a 429 with Discord's
// retry_after waits that long instead, using no attempt); any other
// answer fails it for the operator to replay.
type DeliverEventWorker struct {
	river.WorkerDefaults[DeliverEventArgs]
	Deps
}

// Timeout covers one POST and the database steps around it.
func (w *DeliverEventWorker) Timeout(*river.Job[DeliverEventArgs]) time.Duration {
	return w.postTimeout() + 20*time.Second
}

func (w *DeliverEventWorker) postTimeout() time.Duration {
	if w.Outbound != nil && w.Outbound.Timeout > 0 {
		return w.Outbound.Timeout
	}
	return outbound.DefaultTimeout
}

func (w *DeliverEventWorker) Work(ctx context.Context, job *river.Job[DeliverEventArgs]) error {
	d, err := postgres.GetOutboundDelivery(ctx, w.Pool, job.Args.DeliveryID)
	if order.ErrorCode(err) == order.ENOTFOUND {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	// Delivered, failed for good, or superseded by a later replay.
	if d.Status != "pending" || d.Replays != job.Args.Replay {
		return nil
	}
	log := w.Logger.With("event_id", d.Event.ID, "type", d.Event.Type, "order_ref", job.Args.OrderRef,
		"delivery_id", d.ID, "destination", d.Destination.Kind, "attempt", job.Attempt)
	record := func(status string, a postgres.OutboundAttempt) error {
		a.Replay = job.Args.Replay
		return postgres.RecordOutboundAttempt(context.WithoutCancel(ctx), w.Pool, d.ID, a, status)
	}
	if err := recordCutOffAttempts(ctx, w.Pool, d.ID, job); err != nil {
		return err
	}
	url, err := w.Outbound.URL(d.Destination)
	if err != nil {
		log.WarnContext(ctx, "event not delivered: its destination is no longer configured", "error", err)
		return river.JobCancel(errors.Join(err, record("failed", postgres.OutboundAttempt{Error: err.Error()})))
	}
	secret := ""
	if w.Outbound != nil {
		secret = w.Outbound.Secret
	}
	res := outbound.Send(ctx, outboundClient, outbound.Request{Kind: d.Destination.Kind, URL: url, Event: d.Event,
		Secret: secret, At: w.Now()}, w.postTimeout())
	a := postgres.OutboundAttempt{Duration: res.Duration}
	if res.Status != 0 {
		a.Status = &res.Status
	}
	if res.Err != nil {
		a.Error = res.Err.Error()
	}
	switch {
	case res.Outcome == outbound.Delivered:
		if err := record("delivered", a); err != nil {
			return err
		}
		log.InfoContext(ctx, "event delivered", "status", res.Status, "duration_ms", res.Duration.Milliseconds())
		return nil
	case res.Outcome == outbound.GiveUp:
		log.WarnContext(ctx, "event refused by its receiver; not retried", "status", res.Status, "error", res.Err)
		return river.JobCancel(errors.Join(res.Err, record("failed", a)))
	case res.RetryAfter > 0:
		if err := record("pending", a); err != nil {
			return err
		}
		return river.JobSnooze(res.RetryAfter)
	case job.Attempt >= job.MaxAttempts:
		return errors.Join(res.Err, record("failed", a))
	}
	return errors.Join(res.Err, record("pending", a))
}

// cutOffAttempt is the log's entry for an attempt that recorded no
// outcome.
const cutOffAttempt = "no outcome recorded: the process posting it stopped mid-attempt (killed, or its node lost); posted again"

// recordCutOffAttempts logs the attempts of job that ended without a
// record of their own: a process killed mid-POST records nothing, and its
// job, handed back to the queue, runs again as a later attempt. The log
// then shows why the receiver may have got the event more than once.
// Snoozes (a 429's retry_after) use no attempt, so a shortfall is only
// ever an attempt cut off.
func recordCutOffAttempts(ctx context.Context, db postgres.DB, deliveryID int64, job *river.Job[DeliverEventArgs]) error {
	recorded, err := postgres.CountOutboundAttempts(ctx, db, deliveryID, job.Args.Replay)
	if err != nil {
		return err
	}
	for range job.Attempt - 1 - recorded {
		if err := postgres.RecordOutboundAttempt(ctx, db, deliveryID,
			postgres.OutboundAttempt{Replay: job.Args.Replay, Error: cutOffAttempt}, "pending"); err != nil {
			return err
		}
	}
	return nil
}

// ReplayDelivery queues delivery id again, with its event's ID, whatever
// became of it, and records the operator's action in the audit log. It
// returns the replay's number and job.
func (s *Support) ReplayDelivery(ctx context.Context, actor string, id int64, reason string) (int, int64, error) {
	var replay int
	var jobID int64
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		d, err := postgres.GetOutboundDelivery(ctx, tx, id)
		if err != nil {
			return err
		}
		if replay, err = postgres.ReplayOutboundDelivery(ctx, tx, id); err != nil {
			return err
		}
		res, err := s.River.InsertTx(ctx, tx, DeliverEventArgs{DeliveryID: id, Replay: replay, EventType: string(d.Event.Type),
			OrderRef: d.Event.Data.OrderRef}, nil)
		if err != nil {
			return err
		}
		jobID = res.Job.ID
		return postgres.RecordAudit(ctx, tx, postgres.AuditEntry{Actor: actor, Action: ActionReplayDelivery, OrderRef: d.Event.Data.OrderRef,
			Reason: reason, Detail: map[string]any{"delivery_id": id, "event_id": d.Event.ID, "type": d.Event.Type,
				"destination": d.Destination.Kind, "replay": replay}})
	})
	if err != nil {
		return 0, 0, err
	}
	s.Logger.InfoContext(ctx, "event delivery replayed", "delivery_id", id, "replay", replay, "actor", actor)
	return replay, jobID, nil
}

// ActionReplayDelivery is the audit log's name of a replayed delivery.
const ActionReplayDelivery = "replay-delivery"

// MaxDeliveries is the most deliveries one listing answers.
const MaxDeliveries = 200

// Deliveries lists recent deliveries that f lets through, newest first,
// older than before (0: from the newest).
func (s *Support) Deliveries(ctx context.Context, f postgres.DeliveryFilter, before int64, limit int) ([]postgres.OutboundDelivery, error) {
	if limit <= 0 || limit > MaxDeliveries {
		limit = MaxDeliveries
	}
	return postgres.ListOutboundDeliveries(ctx, s.Pool, f, before, limit)
}

// DeliveryAttempts lists delivery id's attempts, oldest first.
func (s *Support) DeliveryAttempts(ctx context.Context, id int64) ([]postgres.OutboundAttempt, error) {
	return postgres.OutboundAttempts(ctx, s.Pool, id)
}

// eventStockLow posts stock.low to Discord when the sale tx made leaves
// the price's ready stock below a quarter of its target: at most once a
// day per price, while the refill it queued makes more.
func eventStockLow(ctx context.Context, tx pgx.Tx, deps Deps, priceID string) error {
	if len(deps.Outbound.Destinations(outbound.StockLow)) == 0 || deps.Catalog == nil {
		return nil
	}
	product, ok := deps.Catalog.Lookup(priceID)
	if !ok || product.Stock == 0 {
		return nil
	}
	ready, _, err := postgres.SellableStock(ctx, tx, product.ProjectID, product.KeyDays)
	if err != nil || ready*4 >= product.Stock {
		return err
	}
	now := time.Now
	if deps.Now != nil {
		now = deps.Now
	}
	return recordEvent(ctx, tx, deps, outbound.StockLow, "stock:"+priceID+":"+now().UTC().Format(time.DateOnly), nil, func(d *outbound.Data) {
		d.PriceID, d.Product, d.Stock, d.Target = priceID, product.Name, &ready, &product.Stock
	})
}

// NextDeliveryAttempts says when each pending delivery of list is tried
// next (absent: none is scheduled).
func (s *Support) NextDeliveryAttempts(ctx context.Context, list []postgres.OutboundDelivery) (map[int64]time.Time, error) {
	var ids []int64
	for _, d := range list {
		if d.Status == "pending" {
			ids = append(ids, d.ID)
		}
	}
	return postgres.NextOutboundAttempts(ctx, s.Pool, ids)
}
