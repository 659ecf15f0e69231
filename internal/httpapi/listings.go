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

// searchEmailKeys answers POST /v1/keys/search with {"email": ...}, matched
// case-insensitively. The address travels in the body: a query string is
// kept by every access log and proxy on the way.
func (s *Server) searchEmailKeys(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Email string `json:"email"`
	}
	if err := decodeJSONBody(w, r, &body, maxLookupBody); err != nil {
		s.writeError(w, r, err)
		return
	}
	email, err := jobs.NormalizeEmail(body.Email)
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

// errEmailInURL refuses the listing by address of earlier versions, GET
// /v1/keys?email=: said plainly, so a shop calling it learns where to go
// rather than meeting a bare 404.
var errEmailInURL = order.Errorf(order.EINVALID,
	`email addresses never go into URLs (access logs keep them): POST /v1/keys/search with {"email":"..."}`)

// refuseEmailKeys answers GET /v1/keys, the listing by address of earlier
// versions, with errEmailInURL.
func (s *Server) refuseEmailKeys(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, errEmailInURL)
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
