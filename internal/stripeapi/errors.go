package stripeapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/stripeapi/stripekey"
)

// opError is what every Client method returns on failure. Its message says
// which call failed on which object, renders a *stripe.Error readably
// (stripe-go's own Error method prints the whole error as JSON) and never
// contains the API key. Unwrap keeps the original error reachable, so
// errors.As(err, &*stripe.Error) and errors.Is(err, context.Canceled) work.
type opError struct {
	msg string
	err error
}

func (e *opError) Error() string { return e.msg }
func (e *opError) Unwrap() error { return e.err }

// wrap builds the opError for a failed op on id.
func (c *Client) wrap(op, id string, err error) error {
	var b strings.Builder
	b.WriteString("stripe: ")
	b.WriteString(op)
	if id != "" {
		b.WriteString(" ")
		b.WriteString(id)
	}
	b.WriteString(": ")
	b.WriteString(describe(err))
	return &opError{msg: scrubKey(b.String(), c.apiKey), err: err}
}

// describe renders err in one line. For a Stripe API error that is the HTTP
// status, type, code, message and request ID: what someone reading a log
// needs to look the request up in the Stripe dashboard.
func describe(err error) string {
	var se *stripe.Error
	if !errors.As(err, &se) {
		return err.Error()
	}
	var b strings.Builder
	if se.HTTPStatusCode != 0 {
		b.WriteString(strconv.Itoa(se.HTTPStatusCode))
		b.WriteString(" ")
	}
	b.WriteString(string(se.Type))
	if se.Code != "" {
		b.WriteString("/")
		b.WriteString(string(se.Code))
	}
	if se.Msg != "" {
		b.WriteString(": ")
		b.WriteString(se.Msg)
	}
	if se.Param != "" {
		b.WriteString(" (param ")
		b.WriteString(se.Param)
		b.WriteString(")")
	}
	if se.RequestID != "" {
		b.WriteString(" [request ")
		b.WriteString(se.RequestID)
		b.WriteString("]")
	}
	return b.String()
}

// scrubKey replaces every occurrence of key in msg by a masked form. Stripe
// itself masks keys in its messages, so this is a second line of defence
// against a proxy, a fake or a future library version echoing the key. Keys
// shorter than 8 characters are not real Stripe keys, and replacing such a
// short string would mangle unrelated text.
func scrubKey(msg, key string) string {
	if len(key) < 8 || !strings.Contains(msg, key) {
		return msg
	}
	return strings.ReplaceAll(msg, key, stripekey.Mask(key))
}

// IsNotFound reports whether err is Stripe answering 404 resource_missing:
// the object does not exist in this account and mode (a test-mode ID looked
// up with a live key, for instance). A 404 for an unknown URL is not a
// missing object and does not count.
func IsNotFound(err error) bool {
	var se *stripe.Error
	return errors.As(err, &se) &&
		se.HTTPStatusCode == http.StatusNotFound &&
		se.Code == stripe.ErrorCodeResourceMissing
}

// IsRetryable reports whether err is transient: the same call made later may
// succeed, so the caller should fail in a way that gets it retried (answer a
// webhook with 5xx, requeue a job) rather than record a permanent failure.
// stripe-go has already retried the immediately-safe cases, so this is about
// trying again later, with backoff.
//
// Retryable: network and transport failures, a deadline exceeded (Stripe or
// the network was slow), 409, 429, 5xx, lock_timeout and rate_limit codes,
// and any answer carrying Stripe-Should-Retry: true. Not retryable: bad keys,
// bad requests, missing objects, TLS certificate failures (configuration),
// and context.Canceled (the caller gave up; that says nothing about Stripe).
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	var se *stripe.Error
	if errors.As(err, &se) {
		return stripeErrorRetryable(se)
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if isCertificateError(err) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	if status, ok := undecodableStatus(err); ok {
		return status == http.StatusTooManyRequests || status >= http.StatusInternalServerError
	}
	return false
}

func stripeErrorRetryable(se *stripe.Error) bool {
	// Only "true" is honoured. Stripe-Should-Retry: false tells stripe-go not
	// to repeat the request at once; it does not make a rate limit or an
	// outage permanent for a caller that retries minutes later.
	if se.LastResponse != nil && se.LastResponse.Header.Get("Stripe-Should-Retry") == "true" {
		return true
	}
	switch se.Code {
	case stripe.ErrorCodeLockTimeout, stripe.ErrorCodeRateLimit:
		return true
	}
	switch {
	case se.HTTPStatusCode == http.StatusConflict,
		se.HTTPStatusCode == http.StatusTooManyRequests,
		se.HTTPStatusCode >= http.StatusInternalServerError:
		return true
	}
	return false
}

func isCertificateError(err error) bool {
	var unknownAuthority x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var hostname x509.HostnameError
	var verification *tls.CertificateVerificationError
	return errors.As(err, &unknownAuthority) ||
		errors.As(err, &invalid) ||
		errors.As(err, &hostname) ||
		errors.As(err, &verification)
}

// undecodableStatus recovers the HTTP status of an answer whose body was not
// JSON, typically a load balancer's HTML 502 page in front of Stripe.
// stripe-go v76 reports those only as text, "Couldn't deserialize JSON
// (response status: 502, body sample: ...)", so the status is read back from
// that message; the module version is pinned, so the format is too.
func undecodableStatus(err error) (int, bool) {
	const marker = "(response status: "
	_, rest, ok := strings.Cut(err.Error(), marker)
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, ",")
	if !ok {
		return 0, false
	}
	status, convErr := strconv.Atoi(digits)
	if convErr != nil {
		return 0, false
	}
	return status, true
}

// IsUnauthorized reports whether Stripe refused the API key: 401 (unknown or
// revoked key) or 403 (a restricted key without the permission).
func IsUnauthorized(err error) bool {
	var se *stripe.Error
	return errors.As(err, &se) &&
		(se.HTTPStatusCode == http.StatusUnauthorized || se.HTTPStatusCode == http.StatusForbidden)
}
