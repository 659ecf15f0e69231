package jobs

import (
	"regexp"
	"strings"

	"fulfiller/internal/order"
)

// Tokens of a key's Luarmor note. The note is free text an operator reads
// in the dashboard; these tokens make the facts the service relies on
// parseable.
const (
	noteCustomerPrefix  = "cus:"
	noteReferencePrefix = "ref:"
)

var (
	noteCustomerID = regexp.MustCompile(`^cus_[A-Za-z0-9]{1,250}$`)
	noteReference  = regexp.MustCompile(`^fk_[0-9a-f]{20}$`)
)

// Note is the Luarmor note of a unit's key: the order an operator searches
// for in the dashboard, the Stripe customer (cus:), the unique reference
// (ref:) and the buyer's email, whitespace removed so it is one token.
func Note(o *order.Order, k *order.Key) string {
	parts := []string{o.CheckoutSessionID}
	if noteCustomerID.MatchString(o.CustomerID) {
		parts = append(parts, noteCustomerPrefix+o.CustomerID)
	}
	parts = append(parts, noteReferencePrefix+k.Reference)
	if email := strings.Join(strings.Fields(o.CustomerEmail), ""); email != "" {
		parts = append(parts, email)
	}
	return strings.Join(parts, " ")
}

// NoteFacts are what a key's note says about where the key came from.
type NoteFacts struct {
	CustomerID string // "" when the note names none
	Reference  string // "" when the note names none
}

// ParseNote reads the customer and reference tokens of a note. A token
// counts only when it is whole and well formed, and a fact named twice
// (an edited or crafted note) counts as not named: a note is evidence of
// ownership only when it is unambiguous.
func ParseNote(note string) NoteFacts {
	var f NoteFacts
	var customers, references int
	for _, tok := range strings.Fields(note) {
		if id, ok := strings.CutPrefix(tok, noteCustomerPrefix); ok && noteCustomerID.MatchString(id) {
			f.CustomerID = id
			customers++
		}
		if ref, ok := strings.CutPrefix(tok, noteReferencePrefix); ok && noteReference.MatchString(ref) {
			f.Reference = ref
			references++
		}
	}
	if customers != 1 {
		f.CustomerID = ""
	}
	if references != 1 {
		f.Reference = ""
	}
	return f
}
