package app_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/stripeapi/stripefake"
)

// luarmorBadDay fails 35% of Luarmor calls: a fifth of them after Luarmor
// applied the change, so the service cannot know whether a key exists.
var luarmorBadDay = []sandbox.RandomFault{
	{Kind: sandbox.FaultHTTP500, Rate: 0.10},
	{Kind: sandbox.FaultApplyThenDrop, Rate: 0.20},
	{Kind: sandbox.FaultHTML502, Rate: 0.05},
}

const (
	// faultDeliveryGoal is how soon after its webhook every key must be
	// visible, however often Luarmor fails on the way.
	faultDeliveryGoal = 60 * time.Second
	// faultWaitLimit bounds the wait itself, so that a miss of the goal is
	// measured and reported rather than cut short.
	faultWaitLimit = 3 * time.Minute
)

// purchaseWatch follows one order through the order API.
type purchaseWatch struct {
	session stripefake.Session
	units   int
	sent    time.Time
	seen    map[string]time.Duration // user key → first seen, since the webhook
	last    string                   // what the last poll showed, for the report
}

func TestDeliversUnderLuarmorFaults(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.Luarmor.SetRandomFaults(luarmorBadDay...)

	// 15 orders at once, of 1, 2 and 5 units, some with a lifetime unit.
	var watches []*purchaseWatch
	for i := range 15 {
		items := []stripefake.Item{{PriceID: priceMonth, Quantity: []int64{1, 2, 5}[i%3]}}
		if i%4 == 0 {
			items = append(items, stripefake.Item{PriceID: priceLife, Quantity: 1})
		}
		units := 0
		for _, it := range items {
			units += int(it.Quantity)
		}
		watches = append(watches, &purchaseWatch{session: b.paidSession(t, items...), units: units, seen: map[string]time.Duration{}})
	}
	for _, w := range watches {
		w.sent = time.Now()
		b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", w.session.ID))
	}

	// Poll as the shop's success page would, noting when each key first
	// shows up, until every unit has its key or the wait limit passes.
	deadline := time.Now().Add(faultWaitLimit)
	for !allKeysSeen(watches) && time.Now().Before(deadline) {
		for _, w := range watches {
			if len(w.seen) < w.units {
				b.pollKeys(t, w)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}

	report := b.faultReport(watches)
	t.Log(report)
	require.True(t, allKeysSeen(watches), "not every key was delivered within the %s wait\n%s", faultWaitLimit, report)
	require.LessOrEqual(t, slowestKey(watches), faultDeliveryGoal, "a key took longer than %s after its webhook\n%s", faultDeliveryGoal, report)

	// Exactly one key per unit, in the order API and in Luarmor.
	delivered := map[string]bool{}
	for _, w := range watches {
		code, o := b.GetOrder(t, w.session.ID)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "fulfilled", o.Status)
		require.Len(t, o.Keys, w.units)
		for _, k := range o.Keys {
			require.Equal(t, "active", k.Status)
			require.False(t, delivered[k.UserKey], "a key delivered twice")
			delivered[k.UserKey] = true
			require.Contains(t, b.user(t, k.UserKey).Note, w.session.ID)
		}
		require.Equal(t, w.units, b.luarmorUsersFor(w.session.ID), "Luarmor holds one key per unit of the order, no extra")
	}
	inLuarmor := map[string]bool{}
	for _, u := range b.Luarmor.Users(project) {
		inLuarmor[u.UserKey] = true
	}
	require.Equal(t, delivered, inLuarmor, "every key in Luarmor is a delivered one")
	require.Zero(t, b.Count(t, "SELECT count(*) FROM river_job WHERE state = 'discarded'"), "no job gave up")
	require.NotZero(t, faultedCalls(b.Luarmor.Calls()), "the faults were injected")
}

// pollKeys reads the order once and notes keys seen for the first time.
func (b *bundle) pollKeys(t *testing.T, w *purchaseWatch) {
	t.Helper()
	code, o := b.GetOrder(t, w.session.ID)
	if code != http.StatusOK {
		w.last = fmt.Sprintf("HTTP %d", code)
		return
	}
	at := time.Since(w.sent)
	for _, k := range o.Keys {
		if _, ok := w.seen[k.UserKey]; !ok && k.UserKey != "" {
			w.seen[k.UserKey] = at
		}
	}
	w.last = fmt.Sprintf("%s, %d keys, %d pending", o.Status, len(o.Keys), o.KeysPending)
}

func allKeysSeen(watches []*purchaseWatch) bool {
	for _, w := range watches {
		if len(w.seen) < w.units {
			return false
		}
	}
	return true
}

func slowestKey(watches []*purchaseWatch) time.Duration {
	var slowest time.Duration
	for _, w := range watches {
		for _, d := range w.seen {
			slowest = max(slowest, d)
		}
	}
	return slowest
}

func faultedCalls(calls []sandbox.Call) int {
	n := 0
	for _, c := range calls {
		if c.Fault != "" {
			n++
		}
	}
	return n
}

// faultReport sums up a run: how long keys took from webhook to the order
// API, what Luarmor was put through, and how many tries the keys needed.
func (b *bundle) faultReport(watches []*purchaseWatch) string {
	var latencies []time.Duration
	units, missing := 0, []string{}
	for i, w := range watches {
		units += w.units
		for _, d := range w.seen {
			latencies = append(latencies, d)
		}
		if len(w.seen) < w.units {
			missing = append(missing, fmt.Sprintf("order %d: %d of %d keys (last seen: %s)", i+1, len(w.seen), w.units, w.last))
		}
	}
	slices.Sort(latencies)
	// A key never seen counts as slower than any seen, so the figures of
	// a run that missed keys are not flattered by leaving them out.
	figure := func(p float64) string {
		rank := int(math.Ceil(p / 100 * float64(units)))
		if rank > len(latencies) {
			return fmt.Sprintf("over %s (not delivered)", faultWaitLimit)
		}
		return latencies[max(rank, 1)-1].Round(time.Millisecond).String()
	}
	var r strings.Builder
	fmt.Fprintf(&r, "webhook → key visible, %d of %d keys delivered: p50 %s, p99 %s, max %s (goal: every key within %s)\n",
		len(latencies), units, figure(50), figure(99), figure(100), faultDeliveryGoal)
	calls := b.Luarmor.Calls()
	kinds := map[sandbox.FaultKind]int{}
	for _, c := range calls {
		kinds[c.Fault]++
	}
	fmt.Fprintf(&r, "Luarmor calls: %d, faulted %d (http500 %d, apply_then_drop %d, html502 %d)\n", len(calls), faultedCalls(calls),
		kinds[sandbox.FaultHTTP500], kinds[sandbox.FaultApplyThenDrop], kinds[sandbox.FaultHTML502])
	if attempts, err := b.createKeyAttempts(); err != nil {
		fmt.Fprintf(&r, "create_key attempts unreadable: %v\n", err)
	} else if len(attempts) > 0 {
		retried := 0
		for _, a := range attempts {
			if a > 1 {
				retried++
			}
		}
		fmt.Fprintf(&r, "create_key jobs: %d, %d needed more than one attempt, most attempts %d\n",
			len(attempts), retried, attempts[len(attempts)-1])
	}
	for _, m := range missing {
		fmt.Fprintf(&r, "missing: %s\n", m)
	}
	return r.String()
}

// createKeyAttempts lists the attempts of every create_key job, ascending.
func (b *bundle) createKeyAttempts() ([]int, error) {
	rows, err := b.Pool.Query(context.Background(), "SELECT attempt FROM river_job WHERE kind = 'create_key' ORDER BY attempt")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int])
}
