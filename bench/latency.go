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
	r.milestones, r.milestonesErr = purchaseSteps(ctx, svc, timings)
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
