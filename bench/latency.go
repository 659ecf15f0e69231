package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"fulfiller/internal/httpapi"
	"fulfiller/internal/jobs"
)

// latencyOptions shapes the webhook-to-key phase.
type latencyOptions struct {
	purchases      int
	luarmorLatency time.Duration // the sandbox's answer time
	poll           time.Duration // order API polling interval
	timeout        time.Duration // per purchase, before the run fails
}

// latencyResult is what the webhook-to-key phase measured.
type latencyResult struct {
	seen []time.Duration // webhook sent -> key seen through the order API, sorted
	// milestones are the medians of intermediate steps, in order, each
	// counted from the moment the webhook was sent; milestonesErr says why
	// they are missing, if they are.
	milestones    []milestone
	milestonesErr error
}

type milestone struct {
	Name   string
	Median time.Duration
	P99    time.Duration
}

// timing is one purchase's clock readings.
type timing struct {
	sessionID string
	sent      time.Time     // just before signing and sending the webhook
	answered  time.Duration // the webhook's 200
	seen      time.Duration // the first poll that showed the key
}

// runPurchases buys o.purchases keys one after the other on an otherwise
// idle service, as a shop's success page sees it: register the paid session
// with the Stripe fake, send its checkout.session.completed webhook, then
// poll GET /v1/orders/{id} until the order is fulfilled with its key.
func runPurchases(ctx context.Context, client *http.Client, svc *service, o latencyOptions) (*latencyResult, error) {
	svc.sandbox.SetLatency(o.luarmorLatency)
	maker, err := newEventMaker("paid", benchItems)
	if err != nil {
		return nil, err
	}
	// As in runLoad, an interrupt is noticed between requests, not inside.
	reqCtx := context.WithoutCancel(ctx)
	timings := make([]timing, 0, o.purchases)
	for i := range o.purchases {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := maker.next(time.Now())
		svc.stripe.PutSession(p.session)
		sent := time.Now()
		if _, err := post(reqCtx, client, svc.webhookURL(), p.Body, sign(p.Body, benchSecret, sent)); err != nil {
			return nil, fmt.Errorf("purchase %d (%s): webhook not accepted: %w", i+1, p.SessionID, err)
		}
		answered := time.Since(sent)
		seen, err := waitForKey(ctx, reqCtx, client, svc.main.URL(), p.SessionID, sent, o)
		if err != nil {
			return nil, fmt.Errorf("purchase %d: %w", i+1, err)
		}
		timings = append(timings, timing{sessionID: p.SessionID, sent: sent, answered: answered, seen: seen})
	}

	r := &latencyResult{}
	for _, t := range timings {
		r.seen = append(r.seen, t.seen)
	}
	slices.Sort(r.seen)
	// The breakdown reads River's and the service's tables; should their
	// shape change, the measured latencies still stand on their own.
	r.milestones, r.milestonesErr = milestones(ctx, svc, timings)
	return r, nil
}

// waitForKey polls the order API until the order shows a delivered key and
// returns the time since sent.
func waitForKey(ctx, reqCtx context.Context, client *http.Client, baseURL, sessionID string, sent time.Time, o latencyOptions) (time.Duration, error) {
	var last string // set by every pass that goes on polling
	for {
		status, order, err := getOrder(reqCtx, client, baseURL, sessionID, "")
		switch {
		case err != nil:
			return 0, fmt.Errorf("order %s: %w", sessionID, err)
		case status != http.StatusOK:
			last = fmt.Sprintf("HTTP %d", status)
		case keyVisible(order):
			return time.Since(sent), nil
		case order.Status == "failed" || order.Status == "revoked":
			return 0, fmt.Errorf("order %s ended %s instead of fulfilled", sessionID, order.Status)
		default:
			last = fmt.Sprintf("status %s, %d keys pending", order.Status, order.KeysPending)
		}
		if time.Since(sent) > o.timeout {
			return 0, fmt.Errorf("order %s had no key %s after the webhook; last seen: %s", sessionID, o.timeout, last)
		}
		if !sleepUntil(ctx, time.Now().Add(o.poll)) {
			return 0, ctx.Err()
		}
	}
}

// keyVisible tells an order the buyer can see the key of.
func keyVisible(o httpapi.OrderJSON) bool {
	return o.Status == "fulfilled" && len(o.Keys) > 0 && o.Keys[0].UserKey != ""
}

// getOrder asks the order API for an order; query, when set, is added to
// the URL as is (e.g. "wait=30", a long-poll).
func getOrder(ctx context.Context, client *http.Client, baseURL, sessionID, query string) (int, httpapi.OrderJSON, error) {
	status, o, _, err := getOrderFrom(ctx, client, baseURL, sessionID, query, "")
	return status, o, err
}

// getOrderFrom is getOrder from the client address forwardedFor (sent as
// X-Forwarded-For when not empty, for a service behind a trusted proxy); it
// also returns the answer's headers.
func getOrderFrom(ctx context.Context, client *http.Client, baseURL, sessionID, query, forwardedFor string) (int, httpapi.OrderJSON, http.Header, error) {
	var o httpapi.OrderJSON
	u := baseURL + "/v1/orders/" + sessionID
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, o, nil, err
	}
	if forwardedFor != "" {
		req.Header.Set("X-Forwarded-For", forwardedFor)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, o, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, o, resp.Header, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
		return resp.StatusCode, o, resp.Header, fmt.Errorf("decoding the order API's answer: %w", err)
	}
	return resp.StatusCode, o, resp.Header, nil
}

// milestones reads, for every purchase, when River picked up and finished
// its jobs and when the key was stored, so the report can say where the
// time between webhook and key goes. The database and this process share
// one clock (same machine), so its timestamps compare with the sender's.
func milestones(ctx context.Context, svc *service, timings []timing) ([]milestone, error) {
	ids := make([]string, len(timings))
	for i, t := range timings {
		ids[i] = t.sessionID
	}
	rows, err := svc.main.Pool.Query(ctx, `
		SELECT o.checkout_session_id, f.attempted_at, f.finalized_at, c.attempted_at, k.delivered_at
		FROM orders o
		JOIN river_job f ON f.kind = $2 AND (f.args->>'order_id')::bigint = o.id
		JOIN order_keys k ON k.checkout_session_id = o.checkout_session_id
		JOIN river_job c ON c.kind = $3 AND (c.args->>'order_key_id')::bigint = k.id
		WHERE o.checkout_session_id = ANY($1)`, ids, jobs.FulfilOrderArgs{}.Kind(), jobs.CreateKeyArgs{}.Kind())
	if err != nil {
		return nil, fmt.Errorf("reading job timings: %w", err)
	}
	defer rows.Close()
	type stamps struct{ fulfilStart, fulfilEnd, keyStart, keyStored time.Time }
	byID := map[string]stamps{}
	for rows.Next() {
		var id string
		var s stamps
		if err := rows.Scan(&id, &s.fulfilStart, &s.fulfilEnd, &s.keyStart, &s.keyStored); err != nil {
			return nil, fmt.Errorf("reading job timings: %w", err)
		}
		byID[id] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading job timings: %w", err)
	}

	names := []string{"webhook answered", "fulfil_order started", "fulfil_order done",
		"create_key started", "key stored", "key seen by the poll"}
	series := make([][]time.Duration, len(names))
	for _, t := range timings {
		s, ok := byID[t.sessionID]
		if !ok {
			return nil, fmt.Errorf("reading job timings: no %s and %s jobs found for %s",
				jobs.FulfilOrderArgs{}.Kind(), jobs.CreateKeyArgs{}.Kind(), t.sessionID)
		}
		for i, d := range []time.Duration{t.answered, s.fulfilStart.Sub(t.sent), s.fulfilEnd.Sub(t.sent),
			s.keyStart.Sub(t.sent), s.keyStored.Sub(t.sent), t.seen} {
			series[i] = append(series[i], d)
		}
	}
	out := make([]milestone, len(names))
	for i, name := range names {
		slices.Sort(series[i])
		out[i] = milestone{Name: name, Median: percentile(series[i], 50), P99: percentile(series[i], 99)}
	}
	return out, nil
}
