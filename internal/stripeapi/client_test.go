package stripeapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/stripeapi"
	"fulfiller/internal/stripeapi/stripefake"
)

const testKey = "sk_test_fulfiller0123456789abcdefXYZ"

// setup starts a fake Stripe on a real HTTP server and a Client pointed at
// it.
func setup(t *testing.T) (*fulfillertest.Stripe, *stripeapi.Client) {
	t.Helper()
	fake := fulfillertest.StartStripe(t, testKey)
	return fake, fake.Client()
}

func TestCheckoutSessionPaymentMode(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutSession(stripefake.Session{
		ID:            "cs_test_pay1",
		CustomerEmail: "buyer@example.com",
		Customer:      "cus_1",
		PaymentIntent: "pi_1",
		DiscordID:     "123456789012345678",
		Metadata:      map[string]string{"plan": "lifetime"},
		Items:         []stripefake.Item{{PriceID: "price_life", Quantity: 2, UnitAmount: 2500}},
	})

	s, err := c.CheckoutSession(context.Background(), "cs_test_pay1")
	require.NoError(t, err)
	require.Equal(t, "cs_test_pay1", s.ID)
	require.Equal(t, "checkout.session", s.Object)
	require.Equal(t, stripe.CheckoutSessionModePayment, s.Mode)
	require.Equal(t, stripe.CheckoutSessionPaymentStatusPaid, s.PaymentStatus)
	require.Equal(t, stripe.CheckoutSessionStatusComplete, s.Status)
	require.NotNil(t, s.Customer)
	require.Equal(t, "cus_1", s.Customer.ID)
	require.NotNil(t, s.CustomerDetails)
	require.Equal(t, "buyer@example.com", s.CustomerDetails.Email)
	require.Equal(t, "buyer@example.com", s.CustomerEmail)
	require.NotNil(t, s.PaymentIntent)
	require.Equal(t, "pi_1", s.PaymentIntent.ID)
	require.Nil(t, s.Subscription)
	require.Nil(t, s.Invoice)
	require.Len(t, s.CustomFields, 1)
	require.Equal(t, "discord_id", s.CustomFields[0].Key)
	require.Equal(t, stripe.CheckoutSessionCustomFieldTypeText, s.CustomFields[0].Type)
	require.NotNil(t, s.CustomFields[0].Text)
	require.Equal(t, "123456789012345678", s.CustomFields[0].Text.Value)
	require.Equal(t, map[string]string{"plan": "lifetime"}, s.Metadata)
	require.False(t, s.Livemode)
	require.NotZero(t, s.Created)
	require.Equal(t, stripe.CurrencyUSD, s.Currency)
	require.EqualValues(t, 5000, s.AmountTotal)
	require.Nil(t, s.LineItems, "line items are only served by the list route")
}

func TestCheckoutSessionSubscriptionMode(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutSession(stripefake.Session{
		ID:            "cs_test_sub1",
		Mode:          "subscription",
		Customer:      "cus_2",
		Subscription:  "sub_1",
		Invoice:       "in_1",
		CustomerEmail: "sub@example.com",
		Items:         []stripefake.Item{{PriceID: "price_monthly", Recurring: true}},
	})

	s, err := c.CheckoutSession(context.Background(), "cs_test_sub1")
	require.NoError(t, err)
	require.Equal(t, stripe.CheckoutSessionModeSubscription, s.Mode)
	require.Nil(t, s.PaymentIntent)
	require.NotNil(t, s.Subscription)
	require.Equal(t, "sub_1", s.Subscription.ID)
	require.NotNil(t, s.Invoice)
	require.Equal(t, "in_1", s.Invoice.ID)
	require.Empty(t, s.CustomFields)
}

func TestLineItemsFollowsEveryPage(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	items := make([]stripefake.Item, 25)
	for i := range items {
		items[i] = stripefake.Item{PriceID: fmt.Sprintf("price_%02d", i), Quantity: int64(i + 1), Recurring: i%2 == 0}
	}
	fake.PutSession(stripefake.Session{ID: "cs_test_many", Items: items})
	// The client asks for Stripe's maximum page size; the cap forces it
	// through three pages (10 + 10 + 5).
	fake.SetMaxPageSize(10)

	got, err := c.LineItems(context.Background(), "cs_test_many")
	require.NoError(t, err)
	require.Len(t, got, 25)
	for i, li := range got {
		require.Equal(t, stripefake.LineItemID("cs_test_many", i), li.ID)
		require.Equal(t, "item", li.Object)
		require.EqualValues(t, i+1, li.Quantity)
		require.NotNil(t, li.Price)
		require.Equal(t, fmt.Sprintf("price_%02d", i), li.Price.ID)
		if i%2 == 0 {
			require.Equal(t, stripe.PriceTypeRecurring, li.Price.Type)
			require.NotNil(t, li.Price.Recurring)
			require.Equal(t, stripe.PriceRecurringIntervalMonth, li.Price.Recurring.Interval)
		} else {
			require.Equal(t, stripe.PriceTypeOneTime, li.Price.Type)
			require.Nil(t, li.Price.Recurring)
		}
		require.EqualValues(t, 1000, li.Price.UnitAmount)
		require.EqualValues(t, 1000*(i+1), li.AmountTotal)
	}

	reqs := fake.Requests()
	require.Len(t, reqs, 3, "one request per page, nothing else")
	wantAfter := []string{"", stripefake.LineItemID("cs_test_many", 9), stripefake.LineItemID("cs_test_many", 19)}
	for i, r := range reqs {
		require.Equal(t, http.MethodGet, r.Method)
		require.Equal(t, "/v1/checkout/sessions/cs_test_many/line_items", r.Path)
		q, err := url.ParseQuery(r.Query)
		require.NoError(t, err)
		require.Equal(t, "100", q.Get("limit"))
		require.Equal(t, wantAfter[i], q.Get("starting_after"))
	}
}

func TestLineItemsEmptySession(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutSession(stripefake.Session{ID: "cs_test_empty"})

	got, err := c.LineItems(context.Background(), "cs_test_empty")
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	_, c := setup(t)
	ctx := context.Background()

	calls := map[string]func() error{
		"stripe: retrieving checkout session cs_missing": func() error {
			_, err := c.CheckoutSession(ctx, "cs_missing")
			return err
		},
		"stripe: listing line items of checkout session cs_missing": func() error {
			_, err := c.LineItems(ctx, "cs_missing")
			return err
		},
		"stripe: retrieving payment intent pi_missing": func() error {
			_, err := c.PaymentIntent(ctx, "pi_missing")
			return err
		},
		"stripe: retrieving charge ch_missing": func() error {
			_, err := c.Charge(ctx, "ch_missing")
			return err
		},
		"stripe: retrieving invoice in_missing": func() error {
			_, err := c.Invoice(ctx, "in_missing")
			return err
		},
		"stripe: listing lines of invoice in_missing": func() error {
			_, err := c.InvoiceLines(ctx, "in_missing")
			return err
		},
	}
	for prefix, call := range calls {
		err := call()
		require.Error(t, err, prefix)
		require.True(t, stripeapi.IsNotFound(err), "%s: %v", prefix, err)
		require.False(t, stripeapi.IsRetryable(err), prefix)
		require.True(t, strings.HasPrefix(err.Error(), prefix+": 404 invalid_request_error/resource_missing: No such "),
			"got %q", err.Error())
		var se *stripe.Error
		require.ErrorAs(t, err, &se)
		require.Equal(t, stripe.ErrorCodeResourceMissing, se.Code)
		require.NotEmpty(t, se.RequestID)
	}
}

func TestServerErrorRetriedByStripeGo(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutSession(stripefake.Session{ID: "cs_test_flaky", PaymentIntent: "pi_f"})
	fake.FailNext("/v1/checkout/sessions/cs_test_flaky", http.StatusInternalServerError, 1)

	s, err := c.CheckoutSession(context.Background(), "cs_test_flaky")
	require.NoError(t, err)
	require.Equal(t, "cs_test_flaky", s.ID)
	require.Len(t, fake.Requests(), 2, "one failure, one retry")
}

func TestServerErrorOutlastingRetriesIsRetryable(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutSession(stripefake.Session{ID: "cs_test_down"})
	fake.FailNext("/v1/checkout/sessions/cs_test_down", http.StatusInternalServerError, 3)

	_, err := c.CheckoutSession(context.Background(), "cs_test_down")
	require.Error(t, err)
	require.True(t, stripeapi.IsRetryable(err), err.Error())
	require.False(t, stripeapi.IsNotFound(err))
	require.Contains(t, err.Error(), "500 api_error")
	require.Len(t, fake.Requests(), 3, "the first attempt and two retries, no more")

	// The fault is gone now; the next call succeeds.
	_, err = c.CheckoutSession(context.Background(), "cs_test_down")
	require.NoError(t, err)
}

func TestRateLimitIsRetryableButNotRetriedImmediately(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutObject(stripefake.KindCharge, "ch_rl", map[string]any{"amount": 100})
	fake.FailNext("/v1/charges/ch_rl", http.StatusTooManyRequests, 1)

	_, err := c.Charge(context.Background(), "ch_rl")
	require.Error(t, err)
	require.True(t, stripeapi.IsRetryable(err))
	var se *stripe.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, stripe.ErrorCodeRateLimit, se.Code)
	require.Len(t, fake.Requests(), 1, "stripe-go does not hammer a rate-limited API")
}

func TestWrongKey(t *testing.T) {
	t.Parallel()
	fake := fulfillertest.StartStripe(t, testKey)
	fake.PutSession(stripefake.Session{ID: "cs_test_k"})
	const wrongKey = "sk_test_someoneelses9876543210abcd"
	c := stripeapi.New(wrongKey, fake.URL, nil)

	_, err := c.CheckoutSession(context.Background(), "cs_test_k")
	require.Error(t, err)
	require.Contains(t, err.Error(), "stripe: retrieving checkout session cs_test_k: 401 invalid_request_error: Invalid API Key provided")
	require.NotContains(t, err.Error(), wrongKey)
	require.NotContains(t, err.Error(), testKey)
	require.False(t, stripeapi.IsRetryable(err))
	require.False(t, stripeapi.IsNotFound(err))
	require.Len(t, fake.Requests(), 1, "a 401 is not retried")
}

// A server that echoes the key verbatim (a proxy, a broken fake) must still
// not get it into our error messages.
func TestKeyScrubbedFromEchoingServer(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		fmt.Fprintf(w, `{"error":{"type":"invalid_request_error","message":"bad key %s"}}`, key)
	}))
	t.Cleanup(srv.Close)
	c := stripeapi.New(testKey, srv.URL, srv.Client())

	_, err := c.PaymentIntent(context.Background(), "pi_1")
	require.Error(t, err)
	require.NotContains(t, err.Error(), testKey)
	require.Contains(t, err.Error(), "bad key sk_test_****")
	require.True(t, strings.HasSuffix(err.Error(), testKey[len(testKey)-4:]))
}

func TestContextAlreadyCanceled(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutSession(stripefake.Session{ID: "cs_test_ctx"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, err := c.CheckoutSession(ctx, "cs_test_ctx")
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, stripeapi.IsRetryable(err))
	_, err = c.LineItems(ctx, "cs_test_ctx")
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, fake.Requests())
}

func TestContextDeadlineDuringRequest(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutSession(stripefake.Session{ID: "cs_test_slow"})
	fake.SetLatency(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()

	start := time.Now()
	_, err := c.LineItems(ctx, "cs_test_slow")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second, "the call ends with its context")
	require.True(t, stripeapi.IsRetryable(err), "a slow Stripe is worth trying again later")
	require.Len(t, fake.Requests(), 1, "stripe-go does not retry after the context ended")
}

func TestEmptyIDNeverReachesStripe(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)

	_, err := c.CheckoutSession(context.Background(), "")
	require.EqualError(t, err, "stripe: retrieving checkout session: empty id")
	_, err = c.InvoiceLines(context.Background(), "")
	require.Error(t, err)
	require.Empty(t, fake.Requests())
}

func TestNetworkErrorIsRetryable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close()
	c := stripeapi.New(testKey, base, nil)

	_, err := c.Invoice(context.Background(), "in_1")
	require.Error(t, err)
	require.True(t, strings.HasPrefix(err.Error(), "stripe: retrieving invoice in_1: "), err.Error())
	require.True(t, stripeapi.IsRetryable(err), err.Error())
	require.False(t, stripeapi.IsNotFound(err))
}

func TestNonJSONGatewayErrorIsRetryable(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, "<html><body>502 Bad Gateway</body></html>")
	}))
	t.Cleanup(srv.Close)
	c := stripeapi.New(testKey, srv.URL, srv.Client())

	_, err := c.Charge(context.Background(), "ch_1")
	require.Error(t, err)
	require.True(t, stripeapi.IsRetryable(err), err.Error())
	require.EqualValues(t, 3, calls.Load(), "stripe-go retried the gateway error twice")
}

func TestBaseURLWithV1Suffix(t *testing.T) {
	t.Parallel()
	fake := fulfillertest.StartStripe(t, testKey)
	fake.PutSession(stripefake.Session{ID: "cs_test_v1"})
	c := stripeapi.New(testKey, fake.URL+"/v1/", nil)

	_, err := c.CheckoutSession(context.Background(), "cs_test_v1")
	require.NoError(t, err)
	require.Equal(t, "/v1/checkout/sessions/cs_test_v1", fake.Requests()[0].Path)
}

func TestPaymentIntentAndCharge(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.PutObject(stripefake.KindPaymentIntent, "pi_sub", map[string]any{
		"amount":        1500,
		"currency":      "usd",
		"status":        "succeeded",
		"customer":      "cus_9",
		"invoice":       "in_9",
		"latest_charge": "ch_9",
		"metadata":      map[string]string{"k": "v"},
	})
	fake.PutObject(stripefake.KindCharge, "ch_9", map[string]any{
		"amount":          1500,
		"amount_refunded": 1500,
		"refunded":        true,
		"currency":        "usd",
		"payment_intent":  "pi_sub",
		"invoice":         "in_9",
		"status":          "succeeded",
	})
	ctx := context.Background()

	pi, err := c.PaymentIntent(ctx, "pi_sub")
	require.NoError(t, err)
	require.Equal(t, "pi_sub", pi.ID)
	require.Equal(t, "payment_intent", pi.Object)
	require.EqualValues(t, 1500, pi.Amount)
	require.Equal(t, stripe.PaymentIntentStatusSucceeded, pi.Status)
	require.Equal(t, "cus_9", pi.Customer.ID)
	require.Equal(t, "in_9", pi.Invoice.ID)
	require.Equal(t, "ch_9", pi.LatestCharge.ID)
	require.Equal(t, map[string]string{"k": "v"}, pi.Metadata)

	ch, err := c.Charge(ctx, "ch_9")
	require.NoError(t, err)
	require.Equal(t, "ch_9", ch.ID)
	require.Equal(t, "charge", ch.Object)
	require.True(t, ch.Refunded)
	require.EqualValues(t, 1500, ch.AmountRefunded)
	require.Equal(t, "pi_sub", ch.PaymentIntent.ID)
	require.Equal(t, "in_9", ch.Invoice.ID)
}

func TestInvoiceAndLines(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	const n = 23
	lines := make([]map[string]any, n)
	for i := range lines {
		lines[i] = map[string]any{
			"id":           fmt.Sprintf("il_%02d", i),
			"type":         "subscription",
			"amount":       1000,
			"currency":     "usd",
			"quantity":     1,
			"proration":    i == n-1,
			"subscription": "sub_1",
			"period":       map[string]any{"start": 1700000000 + i, "end": 1702592000 + i},
			"price": map[string]any{
				"id": "price_monthly", "object": "price", "type": "recurring",
				"recurring": map[string]any{"interval": "month", "interval_count": 1},
			},
			"unit_amount_excluding_tax": "1000",
		}
	}
	fake.PutObject(stripefake.KindInvoice, "in_1", map[string]any{
		"billing_reason": "subscription_cycle",
		"subscription":   "sub_1",
		"customer":       "cus_1",
		"payment_intent": "pi_1",
		"charge":         "ch_1",
		"status":         "paid",
		"paid":           true,
		"amount_paid":    23000,
		"currency":       "usd",
		"period_end":     1700000000,
		"lines":          lines,
	})
	ctx := context.Background()

	in, err := c.Invoice(ctx, "in_1")
	require.NoError(t, err)
	require.Equal(t, "in_1", in.ID)
	require.Equal(t, "invoice", in.Object)
	require.Equal(t, stripe.InvoiceBillingReasonSubscriptionCycle, in.BillingReason)
	require.Equal(t, "sub_1", in.Subscription.ID)
	require.Equal(t, "cus_1", in.Customer.ID)
	require.Equal(t, "pi_1", in.PaymentIntent.ID)
	require.Equal(t, "ch_1", in.Charge.ID)
	require.True(t, in.Paid)
	require.NotNil(t, in.Lines)
	require.Len(t, in.Lines.Data, 10, "the invoice embeds only the first page of lines")
	require.True(t, in.Lines.HasMore)

	fake.SetMaxPageSize(5)
	got, err := c.InvoiceLines(ctx, "in_1")
	require.NoError(t, err)
	require.Len(t, got, n)
	for i, l := range got {
		require.Equal(t, fmt.Sprintf("il_%02d", i), l.ID)
		require.Equal(t, "line_item", l.Object)
		require.Equal(t, "in_1", l.Invoice)
		require.Equal(t, stripe.InvoiceLineItemTypeSubscription, l.Type)
		require.Equal(t, "sub_1", l.Subscription.ID)
		require.Equal(t, "price_monthly", l.Price.ID)
		require.EqualValues(t, 1702592000+i, l.Period.End)
		require.Equal(t, i == n-1, l.Proration)
		require.InDelta(t, 1000, l.UnitAmountExcludingTax, 0)
	}
	var lineRequests int
	for _, r := range fake.Requests() {
		if r.Path == "/v1/invoices/in_1/lines" {
			lineRequests++
		}
	}
	require.Equal(t, 5, lineRequests, "23 lines in pages of 5")
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	for i := range 8 {
		fake.PutSession(stripefake.Session{
			ID:    fmt.Sprintf("cs_test_c%d", i),
			Items: []stripefake.Item{{PriceID: "price_a"}, {PriceID: "price_b"}},
		})
	}
	errs := make(chan error, 16)
	for i := range 8 {
		id := fmt.Sprintf("cs_test_c%d", i)
		go func() {
			_, err := c.CheckoutSession(context.Background(), id)
			errs <- err
		}()
		go func() {
			items, err := c.LineItems(context.Background(), id)
			if err == nil && len(items) != 2 {
				err = errors.New("want 2 line items")
			}
			errs <- err
		}()
	}
	for range 16 {
		require.NoError(t, <-errs)
	}
}
