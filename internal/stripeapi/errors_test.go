package stripeapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"
)

func TestIsRetryable(t *testing.T) {
	t.Parallel()
	withHeader := func(status int, code stripe.ErrorCode, h, v string) *stripe.Error {
		e := &stripe.Error{HTTPStatusCode: status, Code: code, Type: stripe.ErrorTypeInvalidRequest}
		e.SetLastResponse(&stripe.APIResponse{Header: http.Header{h: []string{v}}, StatusCode: status})
		return e
	}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain error", errors.New("boom"), false},
		{"canceled", context.Canceled, false},
		{"canceled inside url.Error", &url.Error{Op: "Get", URL: "http://x", Err: context.Canceled}, false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), true},
		{"connection refused", &url.Error{Op: "Get", URL: "http://x", Err: &net.OpError{Op: "dial", Err: errors.New("refused")}}, true},
		{"unknown authority", &url.Error{Op: "Get", URL: "https://x", Err: x509.UnknownAuthorityError{}}, false},
		{"truncated body", io.ErrUnexpectedEOF, true},
		{"500", &stripe.Error{HTTPStatusCode: 500, Type: stripe.ErrorTypeAPI}, true},
		{"503 wrapped", fmt.Errorf("ctx: %w", &stripe.Error{HTTPStatusCode: 503}), true},
		{"409", &stripe.Error{HTTPStatusCode: 409}, true},
		{"429 rate_limit", &stripe.Error{HTTPStatusCode: 429, Code: stripe.ErrorCodeRateLimit}, true},
		{"lock_timeout", &stripe.Error{HTTPStatusCode: 429, Code: stripe.ErrorCodeLockTimeout}, true},
		{"400", &stripe.Error{HTTPStatusCode: 400, Type: stripe.ErrorTypeInvalidRequest}, false},
		{"401", &stripe.Error{HTTPStatusCode: 401}, false},
		{"404", &stripe.Error{HTTPStatusCode: 404, Code: stripe.ErrorCodeResourceMissing}, false},
		{"400 with Stripe-Should-Retry true", withHeader(400, "", "Stripe-Should-Retry", "true"), true},
		{"429 with Stripe-Should-Retry false", withHeader(429, stripe.ErrorCodeRateLimit, "Stripe-Should-Retry", "false"), true},
		{"undecodable 502", errors.New("Couldn't deserialize JSON (response status: 502, body sample: '<html>'): invalid character '<'"), true},
		{"undecodable 200", errors.New("Couldn't deserialize JSON (response status: 200, body sample: 'x'): invalid character 'x'"), false},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, IsRetryable(tc.err), tc.name)
	}
}

func TestIsNotFound(t *testing.T) {
	t.Parallel()
	require.False(t, IsNotFound(nil))
	require.False(t, IsNotFound(errors.New("404")))
	require.True(t, IsNotFound(fmt.Errorf("w: %w", &stripe.Error{HTTPStatusCode: 404, Code: stripe.ErrorCodeResourceMissing})))
	require.False(t, IsNotFound(&stripe.Error{HTTPStatusCode: 404}), "an unknown URL is not a missing object")
	require.False(t, IsNotFound(&stripe.Error{HTTPStatusCode: 400, Code: stripe.ErrorCodeResourceMissing}))
}

func TestWrapMessageAndUnwrap(t *testing.T) {
	t.Parallel()
	c := &Client{apiKey: "sk_test_abcdefghijklmnop1234"}
	se := &stripe.Error{
		HTTPStatusCode: 404, Type: stripe.ErrorTypeInvalidRequest, Code: stripe.ErrorCodeResourceMissing,
		Msg: "No such checkout.session: 'cs_x'", Param: "id", RequestID: "req_1",
	}
	err := c.wrap("retrieving checkout session", "cs_x", se)
	require.EqualError(t, err, "stripe: retrieving checkout session cs_x: 404 invalid_request_error/resource_missing: "+
		"No such checkout.session: 'cs_x' (param id) [request req_1]")
	require.ErrorIs(t, err, se)

	leaky := c.wrap("retrieving charge", "ch_1", errors.New("echo sk_test_abcdefghijklmnop1234 and again sk_test_abcdefghijklmnop1234"))
	require.EqualError(t, leaky, "stripe: retrieving charge ch_1: echo sk_test_****1234 and again sk_test_****1234")
}

func TestScrubKeyLeavesShortKeys(t *testing.T) {
	t.Parallel()
	require.Equal(t, "short", scrubKey("short", "sk"), "keys too short to be real are not scrubbed")
}
