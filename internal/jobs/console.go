package jobs

import (
	"context"
	"strings"
	"time"

	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// What the operator console reads beyond an order's details: one search
// box for every way a buyer names an order, what touched an order, and
// the shop's figures.

// MinKeyTail is the fewest last characters of a key a search takes: fewer
// would match keys of unrelated buyers.
const MinKeyTail = postgres.KeyTailIndexed

// SearchOrders finds the orders text names, newest first (at most
// MaxFoundOrders): an order reference or Checkout Session ID (that order),
// an email address, a Stripe customer ID (cus_...), a Discord ID, a whole
// key, or else the last characters of a key (at least MinKeyTail).
func (s *Support) SearchOrders(ctx context.Context, text string) ([]*order.Order, error) {
	text = strings.TrimSpace(text)
	switch {
	case text == "":
		return nil, order.Errorf(order.EINVALID, "type an email address, an order reference (ord_...), a Checkout Session ID, a customer (cus_...), a Discord ID or a key's last characters")
	case orderRefPattern.MatchString(text) || sessionIDPattern.MatchString(text):
		d, err := s.Order(ctx, text)
		if order.ErrorCode(err) == order.ENOTFOUND {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []*order.Order{d.Order}, nil
	case strings.Contains(text, "@"):
		return s.FindOrders(ctx, OrderQuery{Email: text})
	case strings.HasPrefix(text, "cus_"):
		return postgres.OrdersOfCustomer(ctx, s.Pool, text, MaxFoundOrders)
	case DiscordIDPattern.MatchString(text):
		return s.FindOrders(ctx, OrderQuery{DiscordID: text})
	}
	orders, err := s.FindOrders(ctx, OrderQuery{UserKey: text})
	if err != nil || len(orders) > 0 {
		return orders, err
	}
	if len([]rune(text)) < MinKeyTail {
		return nil, order.Errorf(order.EINVALID, "give at least the last %d characters of a key", MinKeyTail)
	}
	return postgres.OrdersOfKeyTail(ctx, s.Pool, text, MaxFoundOrders)
}

// OrderActivity is what touched an order besides OrderDetails' Stripe
// events and keys emails: the events of its payment's revocations, its
// jobs with their attempts, its Luarmor requests, its lifecycle emails,
// the events sent about it to the shop's tools and the support actions on
// it.
type OrderActivity struct {
	RevocationEvents []postgres.EventSummary
	Jobs             []postgres.JobSummary
	LuarmorCalls     []postgres.LuarmorCall
	LifecycleEmails  []postgres.LifecycleEmailSummary
	// Deliveries are the newest MaxDeliveries deliveries of its events.
	Deliveries []postgres.OutboundDelivery
	Audit      []postgres.AuditEntry
}

// MaxOrderLuarmorCalls is how many of an order's Luarmor requests its
// activity holds (the newest): a subscription renewed for years makes one
// or two a month.
const MaxOrderLuarmorCalls = 200

// Activity reads what touched the order of d.
func (s *Support) Activity(ctx context.Context, d *OrderDetails) (*OrderActivity, error) {
	o := d.Order
	var revocationIDs []int64
	var objects []string
	for _, r := range d.Revocations {
		revocationIDs = append(revocationIDs, r.ID)
		objects = append(objects, r.SourceID)
		if r.ChargeID != "" && r.ChargeID != r.SourceID {
			objects = append(objects, r.ChargeID)
		}
	}
	var a OrderActivity
	var err error
	if a.RevocationEvents, err = postgres.EventsAbout(ctx, s.Pool, objects); err != nil {
		return nil, err
	}
	if a.Jobs, err = postgres.JobsOfOrder(ctx, s.Pool, o, revocationIDs); err != nil {
		return nil, err
	}
	if a.LuarmorCalls, err = postgres.LuarmorCallsOfOrder(ctx, s.Pool, o.ID, MaxOrderLuarmorCalls); err != nil {
		return nil, err
	}
	if a.LifecycleEmails, err = postgres.LifecycleEmailsOfOrder(ctx, s.Pool, o.ID); err != nil {
		return nil, err
	}
	if a.Deliveries, err = s.Deliveries(ctx, postgres.DeliveryFilter{OrderID: o.ID}, 0, MaxDeliveries); err != nil {
		return nil, err
	}
	if a.Audit, err = s.AuditLog(ctx, postgres.AuditQuery{OrderID: o.ID, Limit: MaxAuditEntries}); err != nil {
		return nil, err
	}
	return &a, nil
}

// MaxOverviewOrders is how many failed, and waiting, orders the overview
// lists (the newest).
const MaxOverviewOrders = 20

// Overview is the shop at a glance.
type Overview struct {
	Today, Week     postgres.Figures
	Failed, Waiting []*order.Order
	// FailedTotal and WaitingTotal count them all, listed or not.
	FailedTotal, WaitingTotal int
	Retrying                  []postgres.JobKindCount
	// LuarmorCalls counts the fleet's Luarmor requests in each of the last
	// BudgetChartMinutes minutes, oldest first.
	LuarmorCalls []postgres.MinuteCalls
}

// BudgetChartMinutes is how many minutes of Luarmor requests the overview
// draws: the last hour.
const BudgetChartMinutes = 60

// Overview reads the shop's figures since the start of now's day (in now's
// location) and over the last 7 days, its failed and waiting orders and
// its jobs waiting for a retry, and the Luarmor requests of the last hour.
func (s *Support) Overview(ctx context.Context, now time.Time) (*Overview, error) {
	var v Overview
	var err error
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	if v.Today, err = postgres.FiguresSince(ctx, s.Pool, day); err != nil {
		return nil, err
	}
	if v.Week, err = postgres.FiguresSince(ctx, s.Pool, now.Add(-7*24*time.Hour)); err != nil {
		return nil, err
	}
	if v.Failed, v.FailedTotal, err = postgres.OrdersInStatus(ctx, s.Pool, order.StatusFailed, MaxOverviewOrders); err != nil {
		return nil, err
	}
	if v.Waiting, v.WaitingTotal, err = postgres.OrdersInStatus(ctx, s.Pool, order.StatusPending, MaxOverviewOrders); err != nil {
		return nil, err
	}
	if v.Retrying, err = postgres.RetryingJobs(ctx, s.Pool); err != nil {
		return nil, err
	}
	if v.LuarmorCalls, err = postgres.LuarmorCallsPerMinute(ctx, s.Pool, BudgetChartMinutes); err != nil {
		return nil, err
	}
	return &v, nil
}
