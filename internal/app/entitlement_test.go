package app_test

// End-to-end cases of the entitlement ledger: every Luarmor key's expiry
// and ban derive from what its payments paid for, whatever billing model
// they came from and whatever order Stripe's events arrive in. Each of
// these was wrong before the ledger.

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/order"
	"fulfiller/internal/stripeapi/stripefake"
)

// line is one paid line of a subscription invoice: seats of a price for a
// service period.
type line struct {
	price      string
	qty        int64
	start, end int64
}

// invoiceLines registers a paid subscription invoice with exactly the
// given lines and returns its ID and invoice.paid event. Unlike invoice,
// it does not read the lines from what the service recorded: Stripe bills
// what the subscription holds, which may be ahead of the service.
func (b *bundle) invoiceLines(t *testing.T, sub, reason string, ls []line) (string, []byte) {
	t.Helper()
	id := fulfillertest.NewID("in_")
	lines := make([]map[string]any, len(ls))
	for i, l := range ls {
		lines[i] = map[string]any{
			"object": "line_item", "type": "subscription", "proration": false, "subscription": sub, "amount": 1000,
			"price": map[string]any{"id": l.price, "object": "price"}, "quantity": l.qty,
			"period": map[string]any{"start": l.start, "end": l.end},
		}
	}
	inv := map[string]any{
		"id": id, "object": "invoice", "subscription": sub, "billing_reason": reason, "status": "paid",
		"paid": true, "customer": "cus_x", "payment_intent": fulfillertest.NewID("pi_"), "charge": fulfillertest.NewID("ch_"),
	}
	b.Stripe.PutObject(stripefake.KindInvoice, id, mergeMap(inv, map[string]any{"lines": lines}))
	inv["lines"] = map[string]any{"object": "list", "data": lines, "has_more": false}
	return id, fulfillertest.Event(t, "invoice.paid", mustJSON(t, inv))
}

// shown is the expiry the order API shows for key on the order.
func (b *bundle) shown(t *testing.T, sessionID, key string) int64 {
	t.Helper()
	code, o := b.GetOrder(t, sessionID)
	require.Equal(t, http.StatusOK, code)
	for _, k := range o.Keys {
		if k.UserKey == key {
			require.NotNil(t, k.AuthExpire, "the order shows the key's expiry")
			return *k.AuthExpire
		}
	}
	require.Failf(t, "key not on the order", "order %s", sessionID)
	return 0
}

// keyOn returns the order's key of price; the order must hold exactly one.
func keyOn(t *testing.T, o httpapi.OrderJSON, price string) httpapi.KeyJSON {
	t.Helper()
	ks := keysOf(o, price)
	require.Len(t, ks, 1, "one key of %s on the order", price)
	return ks[0]
}

func orderName(first bool, a, b string) string {
	if first {
		return a
	}
	return b
}

// changePlanForAYear moves the subscription's item si_plan to price,
// billed at once for a year from now, as Stripe does for a change of
// interval: the subscription's customer.subscription.updated and the
// invoice.paid of the year, invoice first or not. It returns the invoice
// and the year's end.
func (b *bundle) changePlanForAYear(t *testing.T, sub *stripefake.Subscription, price string, invoiceFirst bool) (string, int64) {
	t.Helper()
	now := time.Now().Unix()
	yearEnd := now + 365*day
	sub.Items = []stripefake.SubscriptionItem{{ID: "si_plan", PriceID: price, Quantity: 1}}
	sub.CurrentPeriodStart, sub.CurrentPeriodEnd = now, yearEnd
	invoiceID, paid := b.invoiceLines(t, sub.ID, "subscription_update", []line{{price, 1, now, yearEnd}})
	if invoiceFirst {
		b.Stripe.PutSubscription(*sub) // Stripe bills the plan it already holds
		b.Deliver(t, paid)
		b.waitIdle(t)
		b.changeSubscription(t, *sub)
	} else {
		b.changeSubscription(t, *sub)
		b.Deliver(t, paid)
		b.waitIdle(t)
	}
	return invoiceID, yearEnd
}

// requireRunsTheYear checks that a key runs the year of a plan change
// (changePlanForAYear) and its grace. The ledger lays the year's period
// from the key's start, which for a new key is when the service saw the
// change: up to the seconds the test has taken since it read the clock for
// the year's start, never less than the year.
func requireRunsTheYear(t *testing.T, expire, yearEnd int64, msgAndArgs ...any) {
	t.Helper()
	yearStart := yearEnd - 365*day
	require.GreaterOrEqual(t, expire, yearEnd+day, msgAndArgs...)
	require.LessOrEqual(t, expire, yearEnd+day+(time.Now().Unix()-yearStart), msgAndArgs...)
}

// A buyer with a one-time key subscribes with the same Stripe customer and
// Discord ID: the subscription's unit extends that key, and the key runs
// the days bought first, then every period the subscription paid, then
// the grace. Nothing paid overlaps or is lost, whether the key had started
// before (its start is its first use) or still waited for first use (its
// clock starts when the subscription extends it, once: a later renewal
// does not mistake the expiry it was given for a first use).
func TestSubscriptionOnTheBuyersOneTimeKeyAddsEveryPaidDay(t *testing.T) {
	t.Parallel()
	for _, startedFirst := range []bool{true, false} {
		t.Run(orderName(startedFirst, "started", "waiting for first use"), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			first, o1 := b.discordOrder(t, discordA, "", stripefake.Item{PriceID: priceMonth, Quantity: 1})
			key := o1.Keys[0].UserKey
			var firstUse int64
			if startedFirst {
				require.NoError(t, b.Luarmor.Execute(project, key, "hwid-1"))
				firstUse = b.user(t, key).AuthExpire - 30*day
			}

			before := time.Now().Unix()
			sub := monthly(fulfillertest.NewID("sub_"), before, stripefake.SubscriptionItem{PriceID: priceMonth, Quantity: 1})
			b.Stripe.PutSubscription(sub)
			s := stripefake.Session{
				ID: fulfillertest.NewID("cs_test_"), Mode: "subscription", PaymentStatus: "paid", Status: "complete",
				CustomerEmail: defaultMail, Customer: first.Customer, Subscription: sub.ID, Invoice: fulfillertest.NewID("in_"),
				DiscordID: discordA, Items: []stripefake.Item{{PriceID: priceMonth, Quantity: 1, Recurring: true}},
			}
			b.Stripe.PutSession(s)
			b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
			b.WaitOrder(t, s.ID, "fulfilled")
			b.waitIdle(t)
			after := time.Now().Unix()
			_, o2 := b.GetOrder(t, s.ID)
			require.Len(t, o2.Keys, 1)
			require.Equal(t, key, o2.Keys[0].UserKey, "Luarmor says the Discord ID is on the buyer's own key: it is extended")
			require.Equal(t, "linked", o2.Keys[0].DiscordLink)

			// The key's start: its first use, or the moment the
			// subscription's period made its clock start.
			start := b.keyStart(t, key)
			if startedFirst {
				require.Equal(t, firstUse, start)
			} else {
				require.GreaterOrEqual(t, start, before)
				require.LessOrEqual(t, start, after)
			}
			u := b.user(t, key)
			require.Zero(t, u.KeyDays)
			require.Equal(t, start+60*day+day, u.AuthExpire, "the 30 days bought, then the first period and the grace")

			_, ev := b.invoice(t, sub.ID, "subscription_cycle", sub.CurrentPeriodEnd+30*day)
			b.Deliver(t, ev)
			b.waitIdle(t)
			require.Equal(t, start, b.keyStart(t, key), "the key's start is what it was")
			want := start + 90*day + day // start + 30 days + two paid months + grace
			u = b.user(t, key)
			require.Equal(t, want, u.AuthExpire, "the renewal adds its month after everything paid before")
			require.False(t, u.IsBanned())
			require.Equal(t, want, b.shown(t, first.ID, key), "the one-time order shows the key's expiry")
			require.Equal(t, want, b.shown(t, s.ID, key), "the subscription's order shows the same")
			require.Len(t, b.Luarmor.Users(project), 1, "no second key")
		})
	}
}

// keyStart is when the key's clock started, as the service recorded it.
func (b *bundle) keyStart(t *testing.T, key string) int64 {
	t.Helper()
	var start *int64
	require.NoError(t, b.Pool.QueryRow(context.Background(), `SELECT started_at FROM ledger_keys WHERE project_id = $1 AND user_key = $2`,
		project, key).Scan(&start))
	require.NotNil(t, start, "the key's start is recorded")
	return *start
}

// A monthly plan moved to a price of another Luarmor project, billed at
// once for a year: the new project's key runs the year, and the old key
// only what it was paid for (its first period and the grace), not banned.
// The invoice may be handled before or after the subscription's change:
// the outcome is the same.
func TestPlanMovedToAnotherProjectRunsOnlyTheNewKeyForTheYear(t *testing.T) {
	t.Parallel()
	for _, invoiceFirst := range []bool{true, false} {
		t.Run(orderName(invoiceFirst, "invoice first", "update first"), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			sub := monthly(fulfillertest.NewID("sub_"), time.Now().Unix()-10*day,
				stripefake.SubscriptionItem{ID: "si_plan", PriceID: priceMonth, Quantity: 1})
			s, o := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
			old := o.Keys[0].UserKey
			require.NoError(t, b.Luarmor.Execute(project, old, "hwid-1"))
			firstEnd := sub.CurrentPeriodEnd

			_, yearEnd := b.changePlanForAYear(t, &sub, priceOther, invoiceFirst)
			got := b.WaitOrder(t, s.ID, "fulfilled")
			b.waitIdle(t)

			require.Len(t, got.Keys, 2)
			oldKey := keyOn(t, got, priceMonth)
			require.Equal(t, old, oldKey.UserKey)
			require.True(t, oldKey.Ending)
			u := b.user(t, old)
			require.Equal(t, firstEnd+day, u.AuthExpire, "the old key keeps its paid month, not the year")
			require.False(t, u.IsBanned(), "a plan change is not a revocation")
			require.Equal(t, firstEnd+day, b.shown(t, s.ID, old))

			newKey := keyOn(t, got, priceOther)
			require.Equal(t, project2, newKey.ProjectID)
			require.False(t, newKey.Ending)
			n, ok := b.Luarmor.User(project2, newKey.UserKey)
			require.True(t, ok, "the new project's key exists")
			requireRunsTheYear(t, n.AuthExpire, yearEnd, "the year paid and the grace")
			require.False(t, n.IsBanned())
			require.Equal(t, n.AuthExpire, b.shown(t, s.ID, newKey.UserKey))

			require.Len(t, b.Luarmor.Users(project), 1)
			require.Len(t, b.Luarmor.Users(project2), 1, "one key runs the year")
		})
	}
}

// The year billed for a plan change is refunded: the plan's key keeps
// only what the subscription paid before the change (the old plan's
// month), whether the new price is of another project (a new key) or of
// the same one (the same key), and whichever of the change and its invoice
// the service handled first. Nothing is banned: a refund of one period is
// not fraud.
func TestRefundedPlanChangeTakesBackTheYearWhicheverEventCameFirst(t *testing.T) {
	t.Parallel()
	for _, price := range []string{priceOther, priceYear} {
		for _, invoiceFirst := range []bool{true, false} {
			t.Run(price+"/"+orderName(invoiceFirst, "invoice first", "update first"), func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				sub := monthly(fulfillertest.NewID("sub_"), time.Now().Unix()-10*day,
					stripefake.SubscriptionItem{ID: "si_plan", PriceID: priceMonth, Quantity: 1})
				s, o := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
				old := o.Keys[0].UserKey
				firstEnd := sub.CurrentPeriodEnd
				invoiceID, yearEnd := b.changePlanForAYear(t, &sub, price, invoiceFirst)
				got := b.WaitOrder(t, s.ID, "fulfilled")
				b.waitIdle(t)
				planKey := keyOn(t, got, price)
				product, ok := b.Catalog.Lookup(price)
				require.True(t, ok)
				projectID := product.ProjectID
				n, ok := b.Luarmor.User(projectID, planKey.UserKey)
				require.True(t, ok)
				requireRunsTheYear(t, n.AuthExpire, yearEnd)

				pi := fulfillertest.NewID("pi_")
				b.Deliver(t, b.refund(t, b.charge(t, pi, invoiceID), pi, invoiceID, 1000))
				b.waitIdle(t)
				n, ok = b.Luarmor.User(projectID, planKey.UserKey)
				require.True(t, ok)
				require.Equal(t, firstEnd+day, n.AuthExpire, "the refunded year is taken back; the month paid before stays")
				require.False(t, n.IsBanned())
				require.Equal(t, firstEnd+day, b.shown(t, s.ID, planKey.UserKey))
				u := b.user(t, old)
				require.Equal(t, firstEnd+day, u.AuthExpire)
				require.False(t, u.IsBanned())
				_, after := b.GetOrder(t, s.ID)
				require.Equal(t, "active", keyOn(t, after, price).Status)
			})
		}
	}
}

// Monthly moved to yearly in the same Luarmor project: the buyer keeps the
// key they run (its HWID stays bound), and it runs to the end of the year
// paid plus the grace, whichever of the change and its invoice comes
// first.
func TestPlanMovedWithinTheProjectKeepsTheKeyAndRunsTheYear(t *testing.T) {
	t.Parallel()
	for _, invoiceFirst := range []bool{true, false} {
		t.Run(orderName(invoiceFirst, "invoice first", "update first"), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			sub := monthly(fulfillertest.NewID("sub_"), time.Now().Unix()-10*day,
				stripefake.SubscriptionItem{ID: "si_plan", PriceID: priceMonth, Quantity: 1})
			s, o := b.subscribe(t, sub, "paid", stripefake.Item{PriceID: priceMonth, Quantity: 1, Recurring: true})
			key := o.Keys[0].UserKey
			require.NoError(t, b.Luarmor.Execute(project, key, "hwid-1"))
			bound := b.user(t, key).Identifier
			require.NotEmpty(t, bound)

			_, yearEnd := b.changePlanForAYear(t, &sub, priceYear, invoiceFirst)
			got := b.WaitOrder(t, s.ID, "fulfilled")
			b.waitIdle(t)

			require.Len(t, got.Keys, 1, "the plan change makes no second key")
			k := got.Keys[0]
			require.Equal(t, key, k.UserKey)
			require.Equal(t, priceYear, k.PriceID)
			require.False(t, k.Ending)
			u := b.user(t, key)
			requireRunsTheYear(t, u.AuthExpire, yearEnd)
			require.Equal(t, bound, u.Identifier, "the HWID stays bound")
			require.False(t, u.IsBanned())
			require.Equal(t, u.AuthExpire, b.shown(t, s.ID, key))
			require.Len(t, b.Luarmor.Users(project), 1)
		})
	}
}

// Stripe gives up on a renewal (unpaid) and the buyer pays later (Stripe
// reactivates the subscription): the key that ran out is extended for the
// new period, not replaced, and nothing bans it, whether PAST_DUE_ACTION
// kept it running or suspended it while Stripe collected.
func TestUnpaidSubscriptionPaidAgainExtendsTheSameKey(t *testing.T) {
	t.Parallel()
	for _, suspend := range []bool{false, true} {
		t.Run(orderName(suspend, "suspend", "keep"), func(t *testing.T) {
			t.Parallel()
			b := setup(t, pastDuePolicy(suspend))
			sub, key := b.lapsedSubscription(t)
			sessionID := b.orderOf(t, sub.ID)
			sub.Status = "past_due"
			b.changeSubscription(t, sub)
			require.Equal(t, suspend, b.user(t, key).IsBanned())
			sub.Status = "unpaid"
			b.changeSubscription(t, sub)
			require.LessOrEqual(t, b.user(t, key).AuthExpire, time.Now().Unix(), "no access once Stripe gave up")

			now := time.Now().Unix()
			sub.Status = "active"
			sub.CurrentPeriodStart, sub.CurrentPeriodEnd = now, now+30*day
			b.Stripe.PutSubscription(sub)
			_, ev := b.invoice(t, sub.ID, "subscription_cycle", sub.CurrentPeriodEnd)
			b.Deliver(t, ev)
			b.waitIdle(t)
			b.changeSubscription(t, sub)

			u := b.user(t, key)
			require.Equal(t, sub.CurrentPeriodEnd+3600, u.AuthExpire, "the new period and the grace")
			require.False(t, u.IsBanned())
			_, o := b.GetOrder(t, sessionID)
			require.Len(t, o.Keys, 1, "no second key")
			require.Equal(t, key, o.Keys[0].UserKey)
			require.Equal(t, "active", o.Keys[0].Status)
			require.False(t, o.Keys[0].Ending)
			require.Equal(t, sub.CurrentPeriodEnd+3600, b.shown(t, sessionID, key))
			require.Len(t, b.Luarmor.Users(project), 1)
		})
	}
}

// PAST_DUE_ACTION=keep keeps a past_due subscription's keys running for
// PAST_DUE_KEEP_FOR past the paid period at most: a renewal whose
// collection outlasts it no longer holds the key.
func TestPastDueKeepLastsAtMostPastDueKeepFor(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		keepFor time.Duration
	}{{"30 minutes", 30 * time.Minute}, {"default", 0}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, withPolicy(func(p *order.Policy) {
				p.RenewalGrace = time.Hour
				if c.keepFor > 0 {
					p.PastDueKeepFor = c.keepFor
				}
			}))
			sub, key := b.lapsedSubscription(t) // paid until two hours ago
			paidEnd := sub.CurrentPeriodStart
			sessionID := b.orderOf(t, sub.ID)
			sub.Status = "past_due"
			before := time.Now().Unix()
			b.changeSubscription(t, sub)
			u := b.user(t, key)
			require.False(t, u.IsBanned())
			require.Equal(t, u.AuthExpire, b.shown(t, sessionID, key), "the order shows Luarmor's expiry")
			if c.keepFor > 0 {
				require.LessOrEqual(t, u.AuthExpire, time.Now().Unix(),
					"kept 30 minutes past the paid end, then the grace: over half an hour ago")
				require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM key_grants WHERE source = 'collecting' AND valid_to = $1`,
					paidEnd+int64(c.keepFor/time.Second)), "the access kept ends PAST_DUE_KEEP_FOR after the paid end")
				// Stripe keeps collecting: another look changes nothing.
				b.changeSubscription(t, sub)
				require.LessOrEqual(t, b.user(t, key).AuthExpire, time.Now().Unix())
				return
			}
			require.GreaterOrEqual(t, u.AuthExpire, before+3600, "within the default 14 days: kept for the grace from now")
			require.LessOrEqual(t, u.AuthExpire, time.Now().Unix()+3600)
		})
	}
}

// A subscription whose collection the shop paused (pause_collection)
// keeps access without paying, as Stripe describes it: under
// PAST_DUE_ACTION=suspend it is never suspended for the unpaid period.
func TestPausedCollectionKeepsAccessAndIsNotSuspended(t *testing.T) {
	t.Parallel()
	for _, status := range []string{"active", "past_due"} {
		t.Run(status, func(t *testing.T) {
			t.Parallel()
			b := setup(t, pastDuePolicy(true))
			sub, key := b.lapsedSubscription(t)
			sessionID := b.orderOf(t, sub.ID)
			sub.Status = status
			sub.PauseCollection = "void"
			before := time.Now().Unix()
			b.changeSubscription(t, sub)
			pause := b.subscription(t, sub.ID).PauseCollection
			require.NotNil(t, pause, "Stripe shows the pause")
			require.Equal(t, stripe.SubscriptionPauseCollectionBehaviorVoid, pause.Behavior)

			u := b.user(t, key)
			require.False(t, u.IsBanned(), "a paused collection is not a payment past due")
			require.Zero(t, b.Luarmor.CallCount(http.MethodPost, "/users/blacklist"))
			require.GreaterOrEqual(t, u.AuthExpire, before+3600, "access kept: the grace from now")
			require.Equal(t, u.AuthExpire, b.shown(t, sessionID, key))
			_, o := b.GetOrder(t, sessionID)
			require.Equal(t, "active", o.Keys[0].Status)

			if status == "past_due" {
				// The shop resumes collection and the renewal is still
				// unpaid: now it is suspended.
				sub.PauseCollection = ""
				b.changeSubscription(t, sub)
				require.True(t, b.user(t, key).IsBanned(), "past due once collection resumed")
			}
		})
	}
}

// Two purchases by the same customer and Discord ID hold one key (the
// second extended the first's): every order holding it shows the same
// expiry, Luarmor's, whether or not the key had started when it was
// extended, and after one of them is refunded.
func TestSharedKeyShowsTheSameExpiryOnEveryOrder(t *testing.T) {
	t.Parallel()
	for _, startedFirst := range []bool{true, false} {
		t.Run(orderName(startedFirst, "started", "waiting for first use"), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			first, o1 := b.discordOrder(t, discordA, "", stripefake.Item{PriceID: priceMonth, Quantity: 1})
			key := o1.Keys[0].UserKey
			var paidUntil int64
			if startedFirst {
				require.NoError(t, b.Luarmor.Execute(project, key, "hwid-1"))
				paidUntil = b.user(t, key).AuthExpire
			}
			before := time.Now().Unix()
			second, o2 := b.discordOrder(t, discordA, first.Customer, stripefake.Item{PriceID: priceMonth, Quantity: 1})
			after := time.Now().Unix()
			require.Equal(t, key, o2.Keys[0].UserKey, "the second purchase extends the first key")

			u := b.user(t, key)
			require.Zero(t, u.KeyDays, "an absolute expiry, not a timer")
			require.NotEqual(t, luarmor.NeverExpires, u.AuthExpire)
			if startedFirst {
				require.Equal(t, paidUntil+30*day, u.AuthExpire)
			} else {
				// The two purchases' 60 days run from the extension: the
				// waiting timer could not hold them.
				require.GreaterOrEqual(t, u.AuthExpire, before+60*day)
				require.LessOrEqual(t, u.AuthExpire, after+60*day)
			}
			require.Equal(t, u.AuthExpire, b.shown(t, first.ID, key), "the first order shows Luarmor's expiry")
			require.Equal(t, u.AuthExpire, b.shown(t, second.ID, key), "so does the second")

			if !startedFirst {
				return
			}
			b.refundOrder(t, second)
			b.waitKeys(t, second.ID, "revoked", "reverted")
			require.Equal(t, paidUntil, b.user(t, key).AuthExpire)
			require.Equal(t, paidUntil, b.shown(t, first.ID, key), "the order still holding the key shows what is left")
			require.Equal(t, paidUntil, b.shown(t, second.ID, key))
		})
	}
}
