package httpapi

import (
	"net/http"
	"regexp"

	"fulfiller/internal/jobs"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// The shop's key listings (shop token): every delivered key of a Stripe
// customer or of an address, each with its order's Checkout Session ID and
// status.
const (
	// MaxListedOrders is how many orders (the newest) a listing reads, and
	// MaxListedKeys how many keys it answers at most, newest orders first.
	MaxListedOrders = 100
	MaxListedKeys   = 500
)

// customerIDPattern accepts Stripe's customer IDs only.
var customerIDPattern = regexp.MustCompile(`^cus_[A-Za-z0-9]{1,250}$`)

// ListedKeyJSON is one key of a listing: the order API's key and its order.
type ListedKeyJSON struct {
	KeyJSON
	CheckoutSessionID string `json:"checkout_session_id"`
	OrderStatus       string `json:"order_status"`
}

// KeyListingJSON is a listing's answer.
type KeyListingJSON struct {
	Keys []ListedKeyJSON `json:"keys"`
}

// listCustomerKeys answers GET /v1/customers/{stripe_customer_id}/keys.
func (s *Server) listCustomerKeys(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("stripe_customer_id")
	if !customerIDPattern.MatchString(id) {
		s.writeError(w, r, order.Errorf(order.EINVALID, "stripe_customer_id must be a Stripe customer ID, cus_ followed by letters and digits"))
		return
	}
	orders, err := postgres.OrdersOfCustomer(r.Context(), s.Pool, id, MaxListedOrders)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, listKeys(orders))
}

// listEmailKeys answers GET /v1/keys?email=, matched case-insensitively.
func (s *Server) listEmailKeys(w http.ResponseWriter, r *http.Request) {
	values := r.URL.Query()["email"]
	if len(values) != 1 {
		s.writeError(w, r, order.Errorf(order.EINVALID, "give the email query parameter once"))
		return
	}
	email, err := jobs.NormalizeEmail(values[0])
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	orders, err := postgres.OrdersOfEmail(r.Context(), s.Pool, email, MaxListedOrders)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, listKeys(orders))
}

// listKeys flattens orders (newest first) into their delivered keys as the
// order API renders them, at most MaxListedKeys.
func listKeys(orders []*order.Order) KeyListingJSON {
	out := KeyListingJSON{Keys: []ListedKeyJSON{}}
	for _, o := range orders {
		rendered := renderOrder(o)
		for _, k := range rendered.Keys {
			if len(out.Keys) == MaxListedKeys {
				return out
			}
			out.Keys = append(out.Keys, ListedKeyJSON{KeyJSON: k, CheckoutSessionID: o.CheckoutSessionID, OrderStatus: string(o.Status)})
		}
	}
	return out
}
