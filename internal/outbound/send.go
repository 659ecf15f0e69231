package outbound

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Request is one delivery attempt.
type Request struct {
	Kind string // DestinationWebhook or DestinationDiscord
	URL  string
	// Event is the event delivered; its body is built for Kind.
	Event Event
	// Secret signs a webhook; At is the signature's time.
	Secret string
	At     time.Time
}

// Outcome is what an attempt's answer means for its delivery.
type Outcome int

const (
	// Delivered: a 2xx answer.
	Delivered Outcome = iota
	// Retry: no answer (a timeout, a refused connection), a 5xx, 408 or
	// 429; the delivery is tried again with backoff.
	Retry
	// GiveUp: any other 4xx (or a 3xx, which is not followed): the
	// receiver refused the event and would refuse it again.
	GiveUp
)

// Result is one attempt: its answer's status (0 without one), how long it
// took, what went wrong, and when Discord asked to be retried.
type Result struct {
	Status     int
	Duration   time.Duration
	Err        error
	Outcome    Outcome
	RetryAfter time.Duration
}

// Send posts r with client, within timeout, and classifies the answer.
// Redirects are not followed (the client must not follow them): a moved
// endpoint is a setting to fix.
func Send(ctx context.Context, client *http.Client, r Request, timeout time.Duration) Result {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	var body []byte
	var err error
	if r.Kind == DestinationDiscord {
		body, err = DiscordBody(r.Event)
	} else {
		body, err = WebhookBody(r.Event)
	}
	if err != nil {
		return Result{Err: err, Outcome: GiveUp}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(body))
	if err != nil {
		return Result{Err: fmt.Errorf("building the request: %w", err), Outcome: GiveUp}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "fulfiller-webhooks/1")
	if r.Kind != DestinationDiscord {
		req.Header.Set(SignatureHeader, Sign(r.Secret, r.At, body))
		req.Header.Set(IdempotencyHeader, r.Event.ID)
		req.Header.Set(EventIDHeader, r.Event.ID)
	}
	start := time.Now()
	resp, err := client.Do(req)
	res := Result{Duration: time.Since(start)}
	if err != nil {
		res.Err, res.Outcome = describeFailure(ctx, err, timeout), Retry
		return res
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	res.Status, res.Duration = resp.StatusCode, time.Since(start)
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		res.Outcome = Delivered
	case s >= 500, s == http.StatusRequestTimeout, s == http.StatusTooManyRequests:
		res.Outcome = Retry
		res.Err = fmt.Errorf("the receiver answered %d: retrying", s)
		if s == http.StatusTooManyRequests {
			res.RetryAfter = retryAfter(resp.Header, answer)
		}
	default:
		res.Outcome = GiveUp
		res.Err = fmt.Errorf("the receiver answered %d, refusing the event: not retried (replay it once the receiver is fixed)", s)
	}
	return res
}

// describeFailure names a request that got no answer, without its URL:
// Discord's holds its token, and the error is logged and listed.
func describeFailure(ctx context.Context, err error, timeout time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %s: retrying", timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("posting: %w", err)
}

// maxRetryAfter bounds how long a 429 may make a delivery wait.
const maxRetryAfter = time.Hour

// retryAfter reads how long a 429 asks to wait: Discord's JSON
// retry_after (seconds, fractional), else the Retry-After header
// (seconds); 0 when neither says.
func retryAfter(h http.Header, body []byte) time.Duration {
	var d struct {
		RetryAfter float64 `json:"retry_after"`
	}
	secs := 0.0
	if json.Unmarshal(body, &d) == nil && d.RetryAfter > 0 {
		secs = d.RetryAfter
	} else if v, err := strconv.ParseFloat(h.Get("Retry-After"), 64); err == nil && v > 0 {
		secs = v
	}
	if secs <= 0 || math.IsNaN(secs) {
		return 0
	}
	return min(time.Duration(secs*float64(time.Second)), maxRetryAfter)
}

// NewClient is the HTTP client deliveries are posted with: no redirects
// followed, no cookies.
func NewClient() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
