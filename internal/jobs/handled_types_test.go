package jobs_test

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/jobs"
)

func TestHandledTypesAreSortedAndEachHasItsObject(t *testing.T) {
	t.Parallel()
	types := jobs.HandledTypes()
	require.True(t, slices.IsSorted(types))
	require.Contains(t, types, "checkout.session.completed")
	require.Contains(t, types, "charge.dispute.created")
	// The lifecycle emails of a subscription: its renewal unpaid, its
	// trial ending.
	for typ, want := range map[string]string{"invoice.payment_failed": "invoice", "customer.subscription.trial_will_end": "subscription"} {
		object, handled := jobs.HandledObject(typ)
		require.True(t, handled, typ)
		require.Equal(t, want, object, typ)
	}
	// A refund that fails after charge.refunded is reported on the refund.
	refundObject, handled := jobs.HandledObject("charge.refund.updated")
	require.True(t, handled)
	require.Equal(t, "refund", refundObject)
	for _, typ := range types {
		object, ok := jobs.HandledObject(typ)
		require.True(t, ok, typ)
		require.NotEmpty(t, object, typ)
	}
	_, ok := jobs.HandledObject("customer.created")
	require.False(t, ok)
	// A caller may change its copy without changing the service's list.
	types[0] = "changed"
	require.NotEqual(t, "changed", jobs.HandledTypes()[0])
}
