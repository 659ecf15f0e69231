package stripeapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/stripeapi"
)

// stripeMockVersion is the stripe-mock whose embedded OpenAPI spec is API
// version 2023-10-16, the one stripe-go v76 sends. .ci/run installs it.
const stripeMockVersion = "v0.183.0"

// stripeMock runs Stripe's own stripe-mock on a loopback port with its
// strict version check, for the test's life, and returns its base URL.
// Without the binary the test is skipped, except in CI (CI set), whose
// .ci/run installs it: there it fails.
func stripeMock(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("stripe-mock")
	if err != nil {
		if gopath, gerr := exec.Command("go", "env", "GOPATH").Output(); gerr == nil {
			candidate := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "stripe-mock")
			if _, serr := os.Stat(candidate); serr == nil {
				bin, err = candidate, nil
			}
		}
	}
	if err != nil {
		why := "stripe-mock is not installed: go install github.com/stripe/stripe-mock@" + stripeMockVersion
		if os.Getenv("CI") != "" {
			t.Fatalf("%s (.ci/run installs it)", why)
		}
		t.Skip(why)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	var out lockedBuffer
	cmd := exec.Command(bin, "-http-addr", addr, "-strict-version-check")
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close() // only probing that stripe-mock listens
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stripe-mock did not listen on %s within 30s; its output:\n%s", addr, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "http://" + addr
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestEveryStripeCallIsAcceptedByStripeMock makes every Stripe call the
// service makes against stripe-mock, which checks each request (path,
// method, parameters, the Stripe-Version header) against Stripe's OpenAPI
// spec of 2023-10-16 and answers with Stripe's own fixtures: a request it
// refuses fails the test with its message, and every answer must decode
// into what the service reads.
func TestEveryStripeCallIsAcceptedByStripeMock(t *testing.T) {
	t.Parallel()
	base := stripeMock(t)
	c := stripeapi.New("sk_test_123", base, nil)
	ctx := context.Background()

	// The mock is strict: a request of another API version is refused,
	// so the calls below were checked against 2023-10-16.
	req, err := http.NewRequest(http.MethodGet, base+"/v1/charges/ch_mock", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer sk_test_123")
	req.Header.Set("Stripe-Version", "2020-08-27")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "stripe-mock checks the version")
	require.Equal(t, "2023-10-16", stripe.APIVersion, "the version stripe-go sends")

	calls := []struct {
		name string
		call func() (any, error)
	}{
		{"retrieve a checkout session", func() (any, error) { return c.CheckoutSession(ctx, "cs_test_mock") }},
		{"retrieve a checkout session with the charge of its receipt", func() (any, error) {
			return c.CheckoutSessionWithReceipt(ctx, "cs_test_mock")
		}},
		{"retrieve a checkout session with what its fulfilment reads", func() (any, error) {
			s, _, err := c.CheckoutSessionToFulfil(ctx, "cs_test_mock")
			return s, err
		}},
		{"list a session's line items", func() (any, error) { return c.LineItems(ctx, "cs_test_mock") }},
		{"retrieve a payment intent", func() (any, error) { return c.PaymentIntent(ctx, "pi_mock") }},
		{"retrieve a charge", func() (any, error) { return c.Charge(ctx, "ch_mock") }},
		{"retrieve an invoice", func() (any, error) { return c.Invoice(ctx, "in_mock") }},
		{"list an invoice's lines", func() (any, error) { return c.InvoiceLines(ctx, "in_mock") }},
		{"retrieve a subscription with its items", func() (any, error) { return c.Subscription(ctx, "sub_mock") }},
		{"retrieve a dispute", func() (any, error) { return c.Dispute(ctx, "dp_mock") }},
		{"cancel a subscription", func() (any, error) { return c.CancelSubscription(ctx, "sub_mock") }},
		{"retrieve a price", func() (any, error) { return c.Price(ctx, "price_mock") }},
		{"list webhook endpoints", func() (any, error) { return c.WebhookEndpoints(ctx) }},
		{"open a customer portal session", func() (any, error) {
			return c.CreateBillingPortalSession(ctx, "cus_mock", "https://keys.shop.example/orders/ol_mock")
		}},
		{"check the API key", func() (any, error) { return nil, c.CheckKey(ctx) }},
		{"list events of the handled types", func() (any, error) {
			var pages int
			err := c.ListEvents(ctx, []string{"checkout.session.completed", "invoice.paid", "charge.refunded"},
				time.Now().Add(-72*time.Hour), func(events []json.RawMessage) error {
					pages++
					if pages > 3 {
						return fmt.Errorf("stripe-mock's list never ended")
					}
					return nil
				})
			return pages, err
		}},
	}
	for _, tc := range calls {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.call()
			require.NoError(t, err, "stripe-mock refused the request")
			if got != nil {
				require.NotZero(t, got)
			}
		})
	}
}
