package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/stripeapi/stripefake"
)

func TestPurchaseDeliversOneKeyPerUnit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 3}, stripefake.Item{PriceID: priceLife, Quantity: 1})

	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	o := b.WaitOrder(t, s.ID, "fulfilled")

	require.Equal(t, defaultMail, o.CustomerEmail)
	require.Len(t, o.Keys, 4)
	require.Zero(t, o.KeysPending)
	byPrice := map[string]int{}
	for _, k := range o.Keys {
		byPrice[k.PriceID]++
		require.Equal(t, project, k.ProjectID)
		require.Equal(t, "active", k.Status)
		u, ok := b.Luarmor.User(project, k.UserKey)
		require.True(t, ok, "the key exists in Luarmor")
		require.Contains(t, u.Note, s.ID, "operators find the order from the dashboard")
		require.Contains(t, u.Note, defaultMail)
		if k.PriceID == priceMonth {
			require.Equal(t, 30, k.KeyDays)
			require.Nil(t, k.AuthExpire, "the key's timer starts at first use")
			require.Equal(t, 30, u.KeyDays)
		} else {
			require.Equal(t, 0, k.KeyDays)
			require.NotNil(t, k.AuthExpire)
			require.Equal(t, luarmor.NeverExpires, *k.AuthExpire)
			require.Equal(t, luarmor.NeverExpires, u.AuthExpire)
		}
	}
	require.Equal(t, map[string]int{priceMonth: 3, priceLife: 1}, byPrice)
	require.Equal(t, 4, b.luarmorUsersFor(s.ID))
	require.Equal(t, 4, b.creates(), "a normal create costs one Luarmor call")
}

func TestLineItemsAreReadAcrossPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.Stripe.SetMaxPageSize(5) // Stripe pages line items; read them all
	items := make([]stripefake.Item, 13)
	for i := range items {
		items[i] = stripefake.Item{PriceID: priceMonth, Quantity: 1}
	}
	s := b.paidSession(t, items...)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	o := b.WaitOrder(t, s.ID, "fulfilled")
	require.Len(t, o.Keys, 13)
}

func TestDiscordIDFromCustomFieldIsLinked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 3})
	s.DiscordID = "123456789012345678"
	b.Stripe.PutSession(s)

	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	o := b.WaitOrder(t, s.ID, "fulfilled")
	require.Len(t, o.Keys, 3)
	// Luarmor links a Discord ID to one key per project: the first key
	// gets it, and every unit still gets a key of its own.
	keys := map[string]bool{}
	linked := 0
	for _, k := range o.Keys {
		keys[k.UserKey] = true
		u, ok := b.Luarmor.User(project, k.UserKey)
		require.True(t, ok)
		if u.DiscordID == "123456789012345678" {
			linked++
		}
	}
	require.Len(t, keys, 3)
	require.Equal(t, 1, linked)
	u, _ := b.Luarmor.User(project, o.Keys[0].UserKey)
	require.Equal(t, "123456789012345678", u.DiscordID)
}

func TestSameEventFiveTimesConcurrently(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})
	body := b.SessionEvent(t, "checkout.session.completed", s.ID)

	var duplicates, fresh int
	results := make([]fulfillertest.Answer, 5)
	concurrently(5, func(i int) { results[i] = b.PostWebhook(t, body, fulfillertest.Sign(body, b.Secret, time.Now())) })
	for _, a := range results {
		require.Equal(t, http.StatusOK, a.Status, string(a.Body))
		var r struct{ Duplicate bool }
		require.NoError(t, json.Unmarshal(a.Body, &r))
		if r.Duplicate {
			duplicates++
		} else {
			fresh++
		}
	}
	require.Equal(t, 1, fresh)
	require.Equal(t, 4, duplicates)

	o := b.WaitOrder(t, s.ID, "fulfilled")
	require.Len(t, o.Keys, 2)
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM stripe_events"))
	// One event, one job: the webhook's job fulfils the order itself, or
	// hands it to a single fulfil_order when it could not read the session.
	require.Equal(t, 1, b.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'handle_events'"))
	require.LessOrEqual(t, b.Count(t, "SELECT count(*) FROM river_job WHERE kind = 'fulfil_order'"), 1)
	require.Equal(t, 2, b.luarmorUsersFor(s.ID))
	require.Equal(t, 2, b.creates())
}

func TestCompletedUnpaidThenAsyncSucceeded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.unpaidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})

	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.waitIdle(t)
	code, o := b.GetOrder(t, s.ID)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "pending", o.Status)
	require.Empty(t, o.Keys)
	rivertest.RequireNotInserted(t.Context(), t, b.jobsDB(), jobs.FulfilOrderArgs{}, nil) // no fulfilment before payment

	s.PaymentStatus = "paid"
	b.Stripe.PutSession(s)
	b.Deliver(t, b.SessionEvent(t, "checkout.session.async_payment_succeeded", s.ID))
	o = b.WaitOrder(t, s.ID, "fulfilled")
	require.Len(t, o.Keys, 1)
	require.Equal(t, 1, b.luarmorUsersFor(s.ID))
}

func TestCompletedAndAsyncSucceededBothPaidGiveKeysOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.Deliver(t, b.SessionEvent(t, "checkout.session.async_payment_succeeded", s.ID))
	b.WaitOrder(t, s.ID, "fulfilled")
	// A late third event for a fulfilled order starts no fulfilment.
	b.waitIdle(t)
	fulfilments := b.Count(t, "SELECT count(*) FROM river_job WHERE kind IN ('fulfil_order', 'create_key')")
	b.Deliver(t, b.SessionEvent(t, "checkout.session.async_payment_succeeded", s.ID))
	b.waitIdle(t)
	require.Equal(t, fulfilments, b.Count(t, "SELECT count(*) FROM river_job WHERE kind IN ('fulfil_order', 'create_key')"))
	require.Equal(t, 2, b.luarmorUsersFor(s.ID))
	require.Equal(t, 2, b.creates())
}

func TestAsyncPaymentFailedMarksOrderFailed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.unpaidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.Deliver(t, b.SessionEvent(t, "checkout.session.async_payment_failed", s.ID))
	o := b.WaitOrder(t, s.ID, "failed")
	require.Empty(t, o.Keys)
	require.Zero(t, b.luarmorUsersFor(s.ID))
}

func TestLostLuarmorAnswerDoesNotMintASecondKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Luarmor creates the key, then the connection drops before the answer.
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultApplyThenDrop, Times: 1})
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))

	o := b.WaitOrder(t, s.ID, "fulfilled")
	require.Len(t, o.Keys, 1)
	require.Equal(t, 1, b.luarmorUsersFor(s.ID), "the retry found the key by its reference")
	require.Equal(t, 1, b.creates(), "the retry looked up instead of creating")
	u, ok := b.Luarmor.User(project, o.Keys[0].UserKey)
	require.True(t, ok)
	require.Contains(t, u.Note, s.ID)
}

func TestFailedLookUpAfterALostAnswerIsRepeatedAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// The create's answer is lost, and the look-up that follows fails twice
	// (a server error, then a dropped answer): the look-up is repeated
	// within the same run, not after a step of backoff.
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultApplyThenDrop, Times: 1})
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodGet, PathContains: "/users", Kind: sandbox.FaultHTTP500, Times: 1})
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodGet, PathContains: "/users", Kind: sandbox.FaultApplyThenDrop, Times: 1})
	s := b.paidSession(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))

	o := b.WaitOrder(t, s.ID, "fulfilled")
	require.Len(t, o.Keys, 1)
	require.Equal(t, 1, b.creates(), "the key was found, not made again")
	require.Equal(t, 3, b.Luarmor.CallCount(http.MethodGet, "/users"), "three tries of the look-up")
	attempts, err := b.createKeyAttempts()
	require.NoError(t, err)
	require.Equal(t, []int{2}, attempts, "found on the run after the lost answer")
}

func TestLuarmorServerErrorIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/users", Kind: sandbox.FaultHTML502, Times: 1})
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	require.Len(t, o.Keys, 1)
	require.Equal(t, 1, b.luarmorUsersFor(s.ID))
}

func TestLuarmorRefusalFailsTheOrderVisibly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.Catalog.Put("price_elsewhere", catalog.Product{ProjectID: "project_luarmor_does_not_know", KeyDays: 7})
	s := b.paidSession(t, stripefake.Item{PriceID: "price_elsewhere", Quantity: 1})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.WaitOrder(t, s.ID, "failed")
	var reason string
	require.NoError(t, b.Pool.QueryRow(context.Background(),
		"SELECT failure_reason FROM orders WHERE checkout_session_id = $1", s.ID).Scan(&reason))
	require.Contains(t, reason, "luarmor refused")
	require.Contains(t, reason, "project_luarmor_does_not_know")
}

func TestUnknownPriceFailsTheOrderUntilTheCatalogIsFixed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.paidSession(t, stripefake.Item{PriceID: "price_not_in_catalog", Quantity: 2})
	b.Deliver(t, b.SessionEvent(t, "checkout.session.completed", s.ID))
	b.WaitOrder(t, s.ID, "failed")
	var reason string
	require.NoError(t, b.Pool.QueryRow(context.Background(),
		"SELECT failure_reason FROM orders WHERE checkout_session_id = $1", s.ID).Scan(&reason))
	require.Contains(t, reason, "price_not_in_catalog")
	require.Zero(t, b.luarmorUsersFor(s.ID))

	// The operator adds the price; the order is fulfilled on request.
	b.Catalog.Put("price_not_in_catalog", catalog.Product{ProjectID: project, KeyDays: 7})
	require.Equal(t, http.StatusUnauthorized, b.adminCall(t, http.MethodPost, "/v1/admin/orders/"+s.ID+"/retry", "", "").status,
		"the retry endpoint needs the admin token")
	require.Equal(t, http.StatusAccepted, b.retryStatus(t, s.ID))
	o := b.WaitOrder(t, s.ID, "fulfilled")
	require.Len(t, o.Keys, 2)
	require.Equal(t, 7, o.Keys[0].KeyDays)
}
