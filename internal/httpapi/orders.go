package httpapi

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"fulfiller/internal/notify"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// MaxWait is the longest ?wait= of the order API, in seconds.
const MaxWait = 30

// Bounds of the Stripe lookups of session IDs the database does not know:
// a client gets a few lookups a second, and the process a few more, so one
// client probing random IDs cannot take the lookups of the buyers whose
// success page arrived before the webhook.
const (
	clientLookupRate  = 1
	clientLookupBurst = 5
	globalLookupRate  = 5
	globalLookupBurst = 20
	maxTrackedClients = 10000
	// lookupTimeout bounds one shared Stripe lookup; it runs on its own
	// context, so a caller that gives up does not fail the others.
	lookupTimeout = 10 * time.Second
	// waitWriteMargin is the time a long-poll answer has to be written
	// after its wait ends.
	waitWriteMargin = 10 * time.Second
)

var errUnknownOrder = order.Errorf(order.ENOTFOUND, "no order for this checkout session")

// Requests for orders not recorded yet held while look-ups are spent: a
// buyer's page or two per client, a few hundred in all, far below
// MAX_CONNECTIONS.
const (
	maxRecordHoldsPerClient = 2
	maxRecordHolds          = 200
)

// Requests held waiting (?wait=) per client: a few of a buyer's tabs. Past
// it a request is answered at once, as if its wait were 0, which the order
// page takes in its stride (it asks again a second later); the connection
// it came on then turns idle, which the connection caps may close.
const maxWaitHoldsPerClient = 8

// maxWaitHolds is the most requests held waiting in the process: half of
// MAX_CONNECTIONS, as held connections are busy ones no cap may close.
func maxWaitHolds(maxConnections int) int {
	if maxConnections <= 0 {
		return math.MaxInt // bounded by the hub's waiters
	}
	return max(1, maxConnections/2)
}

// The two refusals of a look-up of an order not recorded yet: this client
// asked too often, or the whole process's look-ups are spent (a sales
// spike, with buyers ahead of their webhooks).
var (
	errClientLookups = order.Errorf(order.ETOOMANY, "too many lookups of unknown orders; retry in a second")
	errLookupsBusy   = order.Errorf(order.ETOOMANY, "too many lookups of unknown orders; retry in a second")
)

// getOrder answers the order; with ?wait=SECONDS it holds a pending order's
// answer until the order changes from pending or the wait ends.
func (s *Server) getOrder(w http.ResponseWriter, r *http.Request) {
	wait, err := parseWait(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	link, err := s.openLink(r, r.PathValue("checkout_session_id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// Subscribed before the first read, so a delivery committed between
	// the read and the wait still wakes this request.
	var changes *notify.Subscription
	if wait > 0 && s.Changes != nil && link.sessionID != "" {
		// Past its client's or the process's holds, the request is
		// answered at once: waiting is a courtesy, not a right.
		if ip := s.clientIP(r); s.waitHolds.take(ip) {
			defer s.waitHolds.release(ip)
			if changes, err = s.Changes.Subscribe(link.sessionID); err == nil {
				defer changes.Close()
			} // else the process holds its maximum of waiters: answer at once
		}
	}
	until := time.Now().Add(wait)
	if changes != nil {
		// The server's WriteTimeout is about as long as the longest wait.
		_ = http.NewResponseController(w).SetWriteDeadline(until.Add(waitWriteMargin))
	}
	o, err := s.findOrderAwaitingWebhook(r, link, changes, until)
	if errors.Is(err, errLookupsBusy) && changes != nil {
		// Every look-up is spent, by other clients: wait for the webhook
		// to record the order rather than send the buyer away. Whether the
		// ID is real is unknown, so such holds are few, per client and in
		// all: made-up IDs never take the connections webhooks need.
		if ip := s.clientIP(r); s.recordHolds.take(ip) {
			o, err = s.waitForRecord(r, link, changes, until)
			s.recordHolds.release(ip)
		}
	}
	if err != nil && r.Context().Err() != nil {
		return // the client went away; nobody reads an answer
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if changes != nil && o.Status == order.StatusPending {
		if o, err = s.waitWhilePending(r, link.access, o, changes, until); err != nil {
			s.writeError(w, r, err)
			return
		}
		if o == nil {
			return // the client went away
		}
	}
	writeJSON(w, http.StatusOK, s.renderOrderFor(o, link.access.BySession()))
}

// waitForRecord waits, until then, for an order not recorded yet to be
// recorded (its webhook handled) and returns it; errLookupsBusy when the
// wait ends first.
func (s *Server) waitForRecord(r *http.Request, link orderLink, changes *notify.Subscription, until time.Time) (*order.Order, error) {
	deadline := time.NewTimer(time.Until(until))
	defer deadline.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil, r.Context().Err()
		case <-deadline.C:
			return nil, errLookupsBusy
		case <-changes.C:
			o, err := postgres.GetOrder(r.Context(), s.Pool, link.sessionID)
			if order.ErrorCode(err) == order.ENOTFOUND {
				continue // a wake-up for everyone (the listener reconnected)
			}
			if err == nil && !link.access.Grants(o) {
				return nil, errUnknownOrder
			}
			return o, err
		}
	}
}

// awaitWebhook waits, within webhookGrace and until then, for the job of
// the session's recorded webhook to record its order; nil, nil when no
// event of the session awaits its job, or the wait ended first: the order
// is then confirmed with Stripe.
func (s *Server) awaitWebhook(r *http.Request, link orderLink, changes *notify.Subscription, until time.Time) (*order.Order, error) {
	awaiting, err := postgres.CheckoutEventAwaitingHandler(r.Context(), s.Pool, link.sessionID)
	if err != nil || !awaiting {
		return nil, err
	}
	if grace := time.Now().Add(webhookGrace); grace.Before(until) {
		until = grace
	}
	o, err := s.waitForRecord(r, link, changes, until)
	if errors.Is(err, errLookupsBusy) {
		return nil, nil // the job is late
	}
	return o, err
}

// waitWhilePending reads the order's state once per notification until it
// is no longer pending or wait ends, and then the whole order; nil, nil
// means the client has gone. An access rotated meanwhile ends the wait as
// an unknown order. A wake that finds the order still pending reads only
// its row: of a sales spike's many wakes, only the last reads keys.
func (s *Server) waitWhilePending(r *http.Request, access order.Access, o *order.Order, changes *notify.Subscription, until time.Time) (*order.Order, error) {
	deadline := time.NewTimer(time.Until(until))
	defer deadline.Stop()
	changed := false // since o was read
	for {
		select {
		case <-r.Context().Done():
			return nil, nil
		case <-deadline.C:
			if !changed {
				return o, nil
			}
			return s.rereadOrder(r, access, o.CheckoutSessionID)
		case <-changes.C:
			row, err := postgres.GetOrderRow(r.Context(), s.Pool, o.CheckoutSessionID)
			if err != nil {
				if r.Context().Err() != nil {
					return nil, nil
				}
				return nil, err
			}
			if !access.Grants(row) {
				return nil, errUnknownOrder
			}
			if row.Status == order.StatusPending {
				changed = true
				continue
			}
			if err := postgres.AddOrderDetails(r.Context(), s.Pool, row); err != nil {
				if r.Context().Err() != nil {
					return nil, nil
				}
				return nil, err
			}
			return row, nil
		}
	}
}

// rereadOrder reads the whole order again for a waiting request; nil, nil
// when the client has gone.
func (s *Server) rereadOrder(r *http.Request, access order.Access, sessionID string) (*order.Order, error) {
	o, err := postgres.GetOrder(r.Context(), s.Pool, sessionID)
	if err != nil {
		if r.Context().Err() != nil {
			return nil, nil
		}
		return nil, err
	}
	if !access.Grants(o) {
		return nil, errUnknownOrder
	}
	return o, nil
}

// parseWait reads ?wait=, whole seconds from 0 to MaxWait.
func parseWait(r *http.Request) (time.Duration, error) {
	v, ok := r.URL.Query()["wait"]
	if !ok {
		return 0, nil
	}
	n, err := strconv.Atoi(v[0])
	if len(v) != 1 || err != nil || n < 0 || n > MaxWait {
		return 0, order.Errorf(order.EINVALID, "wait must be whole seconds from 0 to 30, given once")
	}
	return time.Duration(n) * time.Second, nil
}

// findOrder reads the order its credential opens, or confirms it with
// Stripe when the database does not know a session ID. A session ID that
// is malformed, remembered as unknown, unknown to Stripe or revoked by
// support, and a signed link that is forged, expired or of an earlier
// generation, are answered alike: 404 with the same body, charged to the
// client's lookups the same way (429 when they run out). Stripe is only
// asked about session IDs the database does not have: a revoked one is
// known, and never looked up.
func (s *Server) findOrder(r *http.Request, link orderLink) (*order.Order, error) {
	return s.findOrderAwaitingWebhook(r, link, nil, time.Time{})
}

// webhookGrace bounds the wait for a recorded webhook's job to record its
// order (findOrderAwaitingWebhook): past it the job is late (a backlog, a
// failure), and the order is confirmed with Stripe instead.
const webhookGrace = 10 * time.Second

// findOrderAwaitingWebhook is findOrder for a request that may wait on
// changes, until then: when the session's webhook is recorded and its job
// has not yet run, that job records and fulfils the order in one commit,
// which wakes the request. Confirming with Stripe meanwhile would only
// record and fulfil the same order a second time, each of the two
// transactions waiting on the other's locks.
func (s *Server) findOrderAwaitingWebhook(r *http.Request, link orderLink, changes *notify.Subscription, until time.Time) (*order.Order, error) {
	refused := false
	if link.sessionID != "" {
		o, err := postgres.GetOrder(r.Context(), s.Pool, link.sessionID)
		switch {
		case err == nil && link.access.Grants(o):
			return o, nil
		case err == nil:
			refused = true
		case order.ErrorCode(err) != order.ENOTFOUND:
			return nil, err
		}
	}
	if changes != nil && !refused {
		o, err := s.awaitWebhook(r, link, changes, until)
		if o != nil || err != nil {
			return o, err
		}
	}
	if !s.clientLookups.allow(s.clientIP(r)) {
		return nil, errClientLookups
	}
	id := link.access.SessionID
	if refused || id == "" || s.negatives.contains(id) {
		return nil, errUnknownOrder
	}
	o, err := s.confirmWithStripe(r.Context(), id)
	if err == nil && !link.access.Grants(o) {
		return nil, errUnknownOrder
	}
	return o, err
}

// confirmWithStripe handles the success page arriving before the webhook,
// as Stripe's fulfilment guide recommends: a session Stripe knows is
// recorded (and, if paid, fulfilled) through the webhook's own path.
// Lookups are bounded by the process's token bucket, coalesced per ID, and
// IDs Stripe does not know are remembered for a while. A coalesced lookup
// runs on its own context: the first caller's going away fails nobody.
func (s *Server) confirmWithStripe(ctx context.Context, id string) (*order.Order, error) {
	result := s.flight.DoChan(id, func() (any, error) {
		if !s.lookups.allow() {
			return nil, errLookupsBusy
		}
		lookupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
		defer cancel()
		o, err := s.Orders.Confirm(lookupCtx, id)
		if order.ErrorCode(err) == order.ENOTFOUND {
			s.negatives.add(id)
			return nil, errUnknownOrder
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, &order.Error{Code: order.EUNAVAILABLE, Message: "could not confirm the order with Stripe in time; retry shortly"}
		}
		return o, err
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case res := <-result:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*order.Order), nil
	}
}
