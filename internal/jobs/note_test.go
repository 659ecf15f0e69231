package jobs

import (
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
)

func TestNoteCarriesTheCustomerAndParsesBack(t *testing.T) {
	o := &order.Order{CheckoutSessionID: "cs_test_a1", CustomerID: "cus_Q1w2", CustomerEmail: "buyer@example.com"}
	k := &order.Key{Reference: "fk_0123456789abcdef0123"}
	note := Note(o, k)
	require.Equal(t, "cs_test_a1 cus:cus_Q1w2 ref:fk_0123456789abcdef0123 buyer@example.com", note)
	require.Equal(t, NoteFacts{CustomerID: "cus_Q1w2", Reference: "fk_0123456789abcdef0123"}, ParseNote(note))

	noCustomer := Note(&order.Order{CheckoutSessionID: "cs_test_a1"}, k)
	require.Equal(t, NoteFacts{Reference: "fk_0123456789abcdef0123"}, ParseNote(noCustomer))
}

func TestParseNoteTrustsOnlyWholeUnambiguousTokens(t *testing.T) {
	const ref = "ref:fk_0123456789abcdef0123"
	cases := map[string]NoteFacts{
		// An email shaped like a token is not one, and cannot add one:
		// Note removes its whitespace.
		"cs_1 " + ref + " cus:cus_victim@example.com":            {Reference: "fk_0123456789abcdef0123"},
		"cs_1 cus:cus_a cus:cus_b " + ref:                        {Reference: "fk_0123456789abcdef0123"},
		"cs_1 cus:cus_a " + ref + " ref:fk_ffffffffffffffffffff": {CustomerID: "cus_a"},
		"cs_1 xcus:cus_a ref:fk_short":                           {},
		"":                                                       {},
	}
	for note, want := range cases {
		require.Equal(t, want, ParseNote(note), note)
	}
	o := &order.Order{CheckoutSessionID: "cs_1", CustomerEmail: "a b cus:cus_evil@x.io"}
	require.Empty(t, ParseNote(Note(o, &order.Key{Reference: "fk_0123456789abcdef0123"})).CustomerID)
}
