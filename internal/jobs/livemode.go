package jobs

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/stripe/stripe-go/v76"

	"fulfiller/internal/logging"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// LiveKey reports whether a Stripe API key works in live mode.
func LiveKey(apiKey string) bool {
	return strings.HasPrefix(apiKey, "sk_live_") || strings.HasPrefix(apiKey, "rk_live_")
}

// modeMismatch reports an event whose livemode differs from the Stripe
// key's: nothing it names can be read with that key, so acting on it would
// fail later and quietly. A checkout's order records the mismatch as its
// failure, for an operator to fix the key and retry; every mismatch is
// logged at error.
func modeMismatch(ctx context.Context, w *HandleEventsWorker, tx pgx.Tx, event stripe.Event) (bool, error) {
	if event.Livemode == w.StripeLivemode {
		return false, nil
	}
	mode, keyMode := "test", "live"
	if event.Livemode {
		mode, keyMode = "live", "test"
	}
	reason := fmt.Sprintf("a %s-mode event arrived but STRIPE_API_KEY is a %s-mode key: set the key of the webhook's mode, then retry the order", mode, keyMode)
	attrs := []any{"event_id", event.ID, "type", event.Type, "reason", reason}
	if strings.HasPrefix(string(event.Type), "checkout.session.") {
		s, err := decodeObject[stripe.CheckoutSession](event, "a checkout session")
		if err != nil {
			return true, err
		}
		d := SessionDetails(s)
		if _, err := postgres.UpsertOrder(ctx, tx, d); err != nil {
			return true, err
		}
		if err := failOrder(ctx, tx, w.Deps, s.ID, order.FailureLivemodeMismatch, reason); err != nil {
			return true, err
		}
		attrs = append(attrs, "order_ref", logging.OrderRef(s.ID))
	}
	w.Logger.ErrorContext(ctx, "stripe event of the other mode; not acted on", attrs...)
	return true, nil
}
