package httpapi

import (
	"net/http"
	"sync"
	"time"

	"fulfiller/internal/jobs"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// A buyer's order routes (/orders/{…}, /v1/orders/{…} and its reset-hwid)
// take either credential of an order: the Checkout Session ID that Stripe's
// success_url redirect names, or a signed order link (jobs.OrderLinkPrefix)
// from an email or find my keys. Either stops working when support rotates
// the order's access; a revoked or refused credential is answered exactly
// as an order the service does not know.

// orderLink is the credential of a request, resolved.
type orderLink struct {
	access order.Access
	// sessionID is the order the credential names, "" when it names none
	// the service could know: a malformed ID, a forged, tampered or
	// expired link, or the link of an order number that does not exist.
	sessionID string
}

// orderLinks holds the fleet's signing key once read: it never changes.
type orderLinks struct {
	mu    sync.Mutex
	links *jobs.OrderLinks
}

func (s *Server) orderLinks(r *http.Request) (*jobs.OrderLinks, error) {
	s.links.mu.Lock()
	defer s.links.mu.Unlock()
	if s.links.links == nil {
		links, err := jobs.LoadOrderLinks(r.Context(), s.Pool)
		if err != nil {
			return nil, err
		}
		s.links.links = links
	}
	return s.links.links, nil
}

// openLink resolves a request's order credential without asking Stripe
// anything; only a database failure is an error.
func (s *Server) openLink(r *http.Request, raw string) (orderLink, error) {
	if !jobs.IsOrderLink(raw) {
		if !sessionIDPattern.MatchString(raw) {
			return orderLink{}, nil
		}
		return orderLink{access: order.Access{SessionID: raw}, sessionID: raw}, nil
	}
	links, err := s.orderLinks(r)
	if err != nil {
		return orderLink{}, err
	}
	access, _, err := links.Verify(raw, time.Now())
	if err != nil {
		return orderLink{}, nil
	}
	sessionID, err := postgres.SessionIDOfOrder(r.Context(), s.Pool, access.OrderID)
	if order.ErrorCode(err) == order.ENOTFOUND {
		return orderLink{}, nil
	}
	if err != nil {
		return orderLink{}, err
	}
	return orderLink{access: access, sessionID: sessionID}, nil
}

// renderOrderFor renders an order for a buyer, who opened it by its
// session ID or else by a signed link, with the shop's support contact.
// The Checkout Session ID is answered only to whoever sent it: a signed
// link expires (find my keys' within the half hour), and the session ID
// would outlive it.
func (s *Server) renderOrderFor(o *order.Order, bySession bool) OrderJSON {
	out := renderOrder(o)
	out.Support = supportJSON(s.Shop.Support)
	if !bySession {
		out.CheckoutSessionID = ""
	}
	return out
}
