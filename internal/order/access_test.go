package order_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
)

func TestOrderAccessGrantsOnlyTheCurrentCredentials(t *testing.T) {
	t.Parallel()
	o := &order.Order{ID: 5, CheckoutSessionID: "cs_test_grants0001", AccessGeneration: 2}
	require.True(t, order.Access{SessionID: "cs_test_grants0001"}.Grants(o))
	require.False(t, order.Access{SessionID: "cs_test_grants0002"}.Grants(o))
	require.True(t, order.Access{OrderID: 5, Generation: 2}.Grants(o))
	require.False(t, order.Access{OrderID: 5, Generation: 1}.Grants(o), "a link from before a rotation")
	require.False(t, order.Access{OrderID: 6, Generation: 2}.Grants(o), "another order's link")
	require.False(t, order.Access{}.Grants(o))

	o.SessionAccessRevoked = true
	require.False(t, order.Access{SessionID: "cs_test_grants0001"}.Grants(o), "a revoked session ID")
	require.True(t, order.Access{OrderID: 5, Generation: 2}.Grants(o))
}
