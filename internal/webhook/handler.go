// Package webhook receives Stripe's webhooks. It verifies each event, checks
// everything the service stores or relies on (ParseEvent: an event that can
// never be recorded is refused with 400) and, in one PostgreSQL transaction,
// records it and enqueues the job that acts on it (RecordTx,
// jobs.HandleEventsArgs); it answers 200 only after that commit, so an event
// Stripe considers delivered is never lost, and a repeated event ID enqueues
// nothing. Concurrent deliveries share transactions (see intake), which keeps
// the endpoint fast under a burst of events; a shared transaction that fails
// is retried event by event, so one event never fails another.
package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/stripe/stripe-go/v76"
	stripewebhook "github.com/stripe/stripe-go/v76/webhook"

	"fulfiller/internal/logging"
	"fulfiller/internal/metrics"
	"fulfiller/internal/postgres"
)

// MaxBodyBytes bounds a webhook body. Stripe's events are a few KiB; a
// larger body is not from Stripe.
const MaxBodyBytes = 256 << 10

// Config configures a Handler.
type Config struct {
	Secrets []string // endpoint secrets; several during a secret roll
	Pool    *pgxpool.Pool
	River   *river.Client[pgx.Tx]
	Logger  *slog.Logger
	// Tolerance is the maximum age of a signature; 0 means Stripe's 5 minutes.
	Tolerance time.Duration
	// Writers is the number of concurrent recording transactions; 0 means 2.
	// Fewer writers make larger batches: on two cores two beat four.
	Writers int
	// Metrics counts deliveries by type and outcome; nil counts nothing.
	Metrics *metrics.Metrics
}

// Handler serves POST /webhooks/stripe. Close it to stop its writers.
type Handler struct {
	cfg         Config
	intake      *intake
	unavailable logging.Sampled // deliveries refused during a database outage
	// rejected logs refused signatures once in a while per sender, with
	// a count: anyone can post junk, and junk must not flood the log.
	rejected logging.SampledByKey
}

// New returns a Handler whose writers run until Close.
func New(cfg Config) *Handler {
	if cfg.Tolerance == 0 {
		cfg.Tolerance = stripewebhook.DefaultTolerance
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 2
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Handler{cfg: cfg, intake: newIntake(cfg.Pool, cfg.River, cfg.Logger, cfg.Writers)}
}

// Close stops the writers once the requests in flight are answered.
func (h *Handler) Close() { h.intake.close() }

// Response is the JSON body of every answer.
type Response struct {
	Received  bool   `json:"received,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Error     string `json:"error,omitempty"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		h.cfg.Metrics.WebhookReceived("", metrics.WebhookRejected)
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeJSON(w, http.StatusRequestEntityTooLarge, Response{Error: fmt.Sprintf("body larger than %d bytes", MaxBodyBytes)})
			return
		}
		writeJSON(w, http.StatusBadRequest, Response{Error: "could not read body"})
		return
	}
	if err := h.verify(body, r.Header.Get("Stripe-Signature")); err != nil {
		h.cfg.Metrics.WebhookReceived("", metrics.WebhookBadSignature) // an unverified body's type is not trusted
		remote := r.RemoteAddr
		if host, _, splitErr := net.SplitHostPort(remote); splitErr == nil {
			remote = host
		}
		h.rejected.Log(r.Context(), h.cfg.Logger, slog.LevelWarn, remote, "webhook rejected", "error", err, "remote", remote)
		public := err.Error()
		if errors.Is(err, errOutsideTolerance) {
			// One answer whichever side of the window: the log has the
			// detail, a sender probing the clock learns nothing more.
			public = errOutsideTolerance.Error()
		}
		writeJSON(w, http.StatusBadRequest, Response{Error: public})
		return
	}
	ev, err := ParseEvent(body)
	if err != nil {
		// Refused before it reaches a shared transaction, where it would
		// fail the events recorded with it. Stripe may send it again; it
		// is refused again, at no cost to other events.
		h.cfg.Logger.WarnContext(r.Context(), "webhook event malformed", "error", err)
		h.cfg.Metrics.WebhookReceived("", metrics.WebhookRejected)
		writeJSON(w, http.StatusBadRequest, Response{Error: err.Error()})
		return
	}
	if ev.APIVersion != stripe.APIVersion {
		// Still handled: the service reads only stable fields from events
		// and reads objects through its own pinned API version.
		h.cfg.Logger.WarnContext(r.Context(), "webhook endpoint API version differs from the service's; set the endpoint to "+stripe.APIVersion,
			"event_id", ev.ID, "api_version", ev.APIVersion)
	}

	isNew, err := h.intake.record(r.Context(), ev)
	if err != nil {
		// This event's own transaction failed (a batch that fails is
		// retried event by event, so another event cannot cause this):
		// the database is down or refused it. Stripe retries a 503. A
		// database outage fails every delivery alike: it is logged once
		// in a while.
		const msg = "webhook not recorded; Stripe will retry"
		args := []any{"event_id", ev.ID, "type", ev.Type, "error", err}
		if postgres.IsUnavailable(err) {
			h.unavailable.Log(r.Context(), h.cfg.Logger, slog.LevelWarn, msg, args...)
		} else {
			h.cfg.Logger.ErrorContext(r.Context(), msg, args...)
		}
		h.cfg.Metrics.WebhookReceived(ev.Type, metrics.WebhookUnavailable)
		writeJSON(w, http.StatusServiceUnavailable, Response{Error: "temporarily unable to record the event"})
		return
	}
	outcome := metrics.WebhookRecorded
	if !isNew {
		outcome = metrics.WebhookDuplicate
	}
	h.cfg.Metrics.WebhookReceived(ev.Type, outcome)
	writeJSON(w, http.StatusOK, Response{Received: true, Duplicate: !isNew})
}

// errOutsideTolerance answers a signature dated outside the tolerance,
// before or after now.
var errOutsideTolerance = errors.New("signature timestamp outside the tolerance")

// verify checks the signature against every configured secret, with
// stripe-go's own verification, without decoding the body yet.
//
// stripe-go refuses a timestamp older than the tolerance only
// (validatePayload: time.Since(t) > tolerance), so a signature dated a day
// ahead would verify, and a captured one would replay for that whole day.
// Stripe signs at sending: a timestamp ahead of now by more than the
// tolerance is forged or this server's clock is behind, and is refused here
// with the same answer as an old one.
func (h *Handler) verify(body []byte, header string) error {
	signedAt, dated := signatureTime(header)
	if dated {
		if ahead := time.Until(signedAt); ahead > h.cfg.Tolerance {
			return fmt.Errorf("%w: signed %s in the future, beyond the %s tolerance: forged, or this server's clock is behind (check its time synchronisation)",
				errOutsideTolerance, ahead.Round(time.Second), h.cfg.Tolerance)
		}
	}
	lastErr := stripewebhook.ErrNoValidSignature
	for _, secret := range h.cfg.Secrets {
		err := stripewebhook.ValidatePayloadWithTolerance(body, header, secret, h.cfg.Tolerance)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, stripewebhook.ErrNoValidSignature):
			lastErr = err
			continue // another secret of a roll may match
		case errors.Is(err, stripewebhook.ErrNotSigned):
			return errors.New("missing Stripe-Signature header")
		case errors.Is(err, stripewebhook.ErrInvalidHeader):
			return errors.New("malformed Stripe-Signature header")
		case errors.Is(err, stripewebhook.ErrTooOld):
			if !dated {
				return fmt.Errorf("%w: the Stripe-Signature header has no timestamp", errOutsideTolerance)
			}
			return fmt.Errorf("%w: signed %s ago, beyond the %s tolerance: a replay, or a delivery held up on its way",
				errOutsideTolerance, time.Since(signedAt).Round(time.Second), h.cfg.Tolerance)
		default:
			return fmt.Errorf("signature check failed: %w", err)
		}
	}
	return fmt.Errorf("no valid signature: %w", lastErr)
}

// signatureTime is the t= timestamp of a Stripe-Signature header, read as
// stripe-go reads it (the last t= wins); false when the header has none or
// is malformed, which stripe-go's own check then refuses.
func signatureTime(header string) (time.Time, bool) {
	var at time.Time
	dated := false
	for _, pair := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok || strings.Contains(v, "=") {
			return time.Time{}, false
		}
		if k == "t" {
			sec, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return time.Time{}, false
			}
			at, dated = time.Unix(sec, 0), true
		}
	}
	return at, dated
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
