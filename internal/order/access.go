package order

// Access is what a buyer's request names an order by: its Checkout Session
// ID, which Stripe's success_url redirect hands the buyer, or a signed link
// naming the order's number and an access generation. Either is a bearer
// credential, so either can be revoked: support's rotation stops the
// session ID and moves the generation on.
type Access struct {
	// SessionID is set for access by Checkout Session ID.
	SessionID string
	// OrderID and Generation are set for access by a signed link.
	OrderID    int64
	Generation int64
}

// BySession reports whether the access is by Checkout Session ID.
func (a Access) BySession() bool { return a.SessionID != "" }

// Grants reports whether the access opens o now: a session ID that support
// has not revoked, or a link of the order's current generation.
func (a Access) Grants(o *Order) bool {
	if a.BySession() {
		return o.CheckoutSessionID == a.SessionID && !o.SessionAccessRevoked
	}
	return a.OrderID != 0 && o.ID == a.OrderID && o.AccessGeneration == a.Generation
}
