package httpapi

import (
	"fmt"
	"math"
	"net/http"
	"time"

	"fulfiller/internal/budget"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// A partly delivered order's progress: "17 of 75 ready", and about how
// long the rest takes. Every key is made by a Luarmor request, and the
// fleet shares one Luarmor budget (LUARMOR_RATE_LIMIT), so the wait is the
// keys still to make, this order's and those the deliver queue makes
// between them, at the budget's pace.

// createCallsPerKey is what making one key costs of the Luarmor budget: a
// normal first create is one request (docs/design.md, "exactly once"; a
// retried create also looks the key up first, which an estimate leaves
// out).
const createCallsPerKey = 1

// KeysTotal counts the order's keys, delivered or to come.
func (v orderView) KeysTotal() int { return len(v.Keys) + v.KeysPending }

// ProgressText is the order's progress in words, "17 of 75 ready".
func (v orderView) ProgressText() string {
	return fmt.Sprintf("%d of %d ready", len(v.Keys), v.KeysTotal())
}

// deliveryEstimate words how long making keys keys takes at a Luarmor
// budget of count requests per window: "less than a minute", "about a
// minute", "about 12 minutes", "about 3 hours".
func deliveryEstimate(keys, count int, window time.Duration) string {
	if count <= 0 || window <= 0 {
		count, window = budget.DefaultCount, budget.DefaultWindow
	}
	wait := time.Duration(float64(keys*createCallsPerKey) * float64(window) / float64(count))
	minutes := int(math.Ceil(wait.Minutes()))
	switch {
	case wait < time.Minute:
		return "less than a minute"
	case minutes == 1:
		return "about a minute"
	case minutes < 120:
		return fmt.Sprintf("about %d minutes", minutes)
	}
	return fmt.Sprintf("about %d hours", int(math.Round(wait.Hours())))
}

// deliveryEstimateOf is the estimate of a partly delivered order's
// remaining keys, "" for any other order. Without the count of other
// orders' keys (the database did not answer it) it counts this order's
// alone.
func (s *Server) deliveryEstimateOf(r *http.Request, o *order.Order, v *orderView) string {
	if v.State != statePartial {
		return ""
	}
	alongside, err := postgres.KeysMadeAlongside(r.Context(), s.Pool, o.CheckoutSessionID, v.KeysPending)
	if err != nil && r.Context().Err() == nil {
		s.Logger.WarnContext(r.Context(), "order page estimates without other orders' keys", "route", routeOf(r), "error", logSafe(r, err))
	}
	return deliveryEstimate(v.KeysPending+alongside, s.LuarmorRateLimit, s.LuarmorRateWindow)
}
