// Package webhook receives Stripe's webhooks: it verifies each event, and in
// one PostgreSQL transaction records it and enqueues the jobs it calls for.
// It answers 200 only after that commit, so an event Stripe considers
// delivered is never lost, and a repeated event enqueues nothing.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/stripe/stripe-go/v76"
	stripewebhook "github.com/stripe/stripe-go/v76/webhook"

	"fulfiller/internal/jobs"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// MaxBodyBytes bounds a webhook body. Stripe's events are a few KiB; a
// larger body is not from Stripe.
const MaxBodyBytes = 256 << 10

// Handler serves POST /webhooks/stripe.
type Handler struct {
	Secrets []string // endpoint secrets; several during a secret roll
	Pool    *pgxpool.Pool
	River   *river.Client[pgx.Tx]
	Logger  *slog.Logger
	// Tolerance is the maximum age of a signature; 0 means Stripe's 5 minutes.
	Tolerance time.Duration
	// Policy is the shop's key lifecycle policy; zero means the default.
	Policy order.Policy
}

// Response is the JSON body of every answer.
type Response struct {
	Received  bool   `json:"received,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Error     string `json:"error,omitempty"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeJSON(w, http.StatusRequestEntityTooLarge, Response{Error: fmt.Sprintf("body larger than %d bytes", MaxBodyBytes)})
			return
		}
		writeJSON(w, http.StatusBadRequest, Response{Error: "could not read body"})
		return
	}
	event, err := h.verify(body, r.Header.Get("Stripe-Signature"))
	if err != nil {
		h.Logger.WarnContext(r.Context(), "webhook rejected", "error", err, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusBadRequest, Response{Error: err.Error()})
		return
	}
	if event.APIVersion != stripe.APIVersion {
		// The event is still handled: the service reads only stable fields
		// from it and re-reads objects through its own pinned API version.
		h.Logger.WarnContext(r.Context(), "webhook endpoint API version differs from the service's; set the endpoint to "+stripe.APIVersion,
			"event_id", event.ID, "api_version", event.APIVersion)
	}

	duplicate, err := h.record(r.Context(), event, body)
	if err != nil {
		var bad *badEvent
		if errors.As(err, &bad) {
			h.Logger.WarnContext(r.Context(), "webhook event malformed", "event_id", event.ID, "type", event.Type, "error", err)
			writeJSON(w, http.StatusBadRequest, Response{Error: bad.Error()})
			return
		}
		// Most likely the database: Stripe retries a 503 with backoff.
		h.Logger.ErrorContext(r.Context(), "webhook not recorded; Stripe will retry", "event_id", event.ID, "type", event.Type, "error", err)
		writeJSON(w, http.StatusServiceUnavailable, Response{Error: "temporarily unable to record the event"})
		return
	}
	writeJSON(w, http.StatusOK, Response{Received: true, Duplicate: duplicate})
}

// verify checks the signature against every configured secret and decodes
// the event.
func (h *Handler) verify(body []byte, header string) (stripe.Event, error) {
	opts := stripewebhook.ConstructEventOptions{Tolerance: h.Tolerance, IgnoreAPIVersionMismatch: true}
	var lastErr error = stripewebhook.ErrNoValidSignature
	for _, secret := range h.Secrets {
		event, err := stripewebhook.ConstructEventWithOptions(body, header, secret, opts)
		switch {
		case err == nil:
			if event.ID == "" || event.Type == "" || event.Data == nil {
				return event, errors.New("event without id, type or data")
			}
			return event, nil
		case errors.Is(err, stripewebhook.ErrNoValidSignature):
			lastErr = err
			continue // another secret of a roll may match
		case errors.Is(err, stripewebhook.ErrNotSigned):
			return event, errors.New("missing Stripe-Signature header")
		case errors.Is(err, stripewebhook.ErrInvalidHeader):
			return event, errors.New("malformed Stripe-Signature header")
		case errors.Is(err, stripewebhook.ErrTooOld):
			return event, errors.New("signature timestamp outside the tolerance")
		default:
			return event, errors.New("body is not a JSON Stripe event")
		}
	}
	return stripe.Event{}, fmt.Errorf("no valid signature: %w", lastErr)
}

type badEvent struct{ msg string }

func (e *badEvent) Error() string { return e.msg }

// record stores the event and enqueues its work in one transaction.
func (h *Handler) record(ctx context.Context, event stripe.Event, body []byte) (duplicate bool, err error) {
	objectID, _ := event.Data.Object["id"].(string)
	if objectID == "" {
		return false, &badEvent{"event data.object has no id"}
	}
	tx, err := h.Pool.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck

	handle, handled := handlers[event.Type]
	inserted, err := postgres.RecordEvent(ctx, tx, postgres.Event{
		ID: event.ID, Type: string(event.Type), APIVersion: event.APIVersion, Livemode: event.Livemode,
		ObjectID: objectID, CreatedAt: time.Unix(event.Created, 0), Handled: handled, Payload: body,
	})
	if err != nil {
		return false, err
	}
	if !inserted {
		return true, nil
	}
	if handled {
		if err := handle(ctx, h, tx, event); err != nil {
			return false, err
		}
	} else {
		h.Logger.DebugContext(ctx, "event recorded, not handled", "event_id", event.ID, "type", event.Type)
	}
	return false, tx.Commit(ctx)
}

// handlers maps the event types the service acts on to what each does
// inside the recording transaction.
var handlers = map[stripe.EventType]func(context.Context, *Handler, pgx.Tx, stripe.Event) error{
	"checkout.session.completed":               checkoutPaid,
	"checkout.session.async_payment_succeeded": checkoutPaid,
	"checkout.session.async_payment_failed":    checkoutFailed,
	"invoice.paid":                             invoicePaid,
	"charge.dispute.created":                   disputeCreated,
	"charge.dispute.closed":                    disputeClosed,
	"charge.refunded":                          chargeRefunded,
	"customer.subscription.deleted":            subscriptionDeleted,
}

func decodeSession(event stripe.Event) (*stripe.CheckoutSession, error) {
	var s stripe.CheckoutSession
	if err := json.Unmarshal(event.Data.Raw, &s); err != nil {
		return nil, &badEvent{"data.object is not a checkout session: " + err.Error()}
	}
	if s.ID == "" {
		return nil, &badEvent{"checkout session without id"}
	}
	return &s, nil
}

// checkoutPaid records the order and, once paid, enqueues its fulfilment.
func checkoutPaid(ctx context.Context, h *Handler, tx pgx.Tx, event stripe.Event) error {
	s, err := decodeSession(event)
	if err != nil {
		return err
	}
	o, err := jobs.RecordSession(ctx, tx, h.River, jobs.SessionDetails(s))
	if err != nil {
		return err
	}
	h.Logger.InfoContext(ctx, "checkout recorded", "event_id", event.ID, "type", event.Type,
		"checkout_session_id", s.ID, "payment_status", s.PaymentStatus, "order_status", o.Status)
	return nil
}

// checkoutFailed marks an order whose delayed payment failed.
func checkoutFailed(ctx context.Context, h *Handler, tx pgx.Tx, event stripe.Event) error {
	s, err := decodeSession(event)
	if err != nil {
		return err
	}
	if _, err := postgres.UpsertOrder(ctx, tx, jobs.SessionDetails(s)); err != nil {
		return err
	}
	h.Logger.InfoContext(ctx, "delayed payment failed; no key is delivered", "checkout_session_id", s.ID)
	return postgres.FailOrder(ctx, tx, s.ID, order.FailurePaymentFailed, "the delayed payment failed")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
