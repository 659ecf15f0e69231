package fulfillertest

import (
	"net/http/httptest"
	"strings"
	"testing"

	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/stripeapi"
	"fulfiller/internal/stripeapi/stripefake"
)

// Luarmor is the Luarmor sandbox served over HTTP for one test.
type Luarmor struct {
	*sandbox.Sandbox
	URL    string
	APIKey string
}

// StartLuarmor serves a sandbox configured by opts until the test ends.
// opts.APIKey "" is the sandbox's default key.
func StartLuarmor(t testing.TB, opts sandbox.Options) *Luarmor {
	t.Helper()
	if opts.APIKey == "" {
		opts.APIKey = sandbox.DefaultAPIKey
	}
	sb := sandbox.New(opts)
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	return &Luarmor{Sandbox: sb, URL: srv.URL, APIKey: opts.APIKey}
}

// Client is the service's Luarmor client pointed at the sandbox.
func (l *Luarmor) Client(opts ...luarmor.Option) *luarmor.Client {
	return luarmor.NewClient(l.APIKey, append([]luarmor.Option{luarmor.WithBaseURL(l.URL)}, opts...)...)
}

// CallCount counts the requests the sandbox received with method to a path
// ending in suffix ("/users").
func (l *Luarmor) CallCount(method, suffix string) int {
	n := 0
	for _, c := range l.Calls() {
		if c.Method == method && strings.HasSuffix(c.Path, suffix) {
			n++
		}
	}
	return n
}

// Stripe is the Stripe stand-in served over HTTP for one test.
type Stripe struct {
	*stripefake.Fake
	URL    string
	APIKey string
}

// StartStripe serves a Stripe fake that accepts apiKey until the test ends.
func StartStripe(t testing.TB, apiKey string) *Stripe {
	t.Helper()
	f := stripefake.New(apiKey)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return &Stripe{Fake: f, URL: srv.URL, APIKey: apiKey}
}

// Client is the service's Stripe client pointed at the fake.
func (s *Stripe) Client() *stripeapi.Client { return stripeapi.New(s.APIKey, s.URL, nil) }

// PaidSession registers a paid, complete one-off Checkout Session of items
// bought by email, with a customer and a payment intent of its own.
func (s *Stripe) PaidSession(email string, items ...stripefake.Item) stripefake.Session {
	sess := stripefake.Session{
		ID: NewID("cs_test_"), Mode: "payment", PaymentStatus: "paid", Status: "complete",
		CustomerEmail: email, Customer: NewID("cus_"), PaymentIntent: NewID("pi_"), Items: items,
	}
	s.PutSession(sess)
	return sess
}
