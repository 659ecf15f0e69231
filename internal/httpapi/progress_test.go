package httpapi

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDeliveryEstimateWordsTheWaitAtTheBudgetsPace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		keys, count int
		window      time.Duration
		want        string
	}{
		{1, 60, time.Minute, "less than a minute"},
		{59, 60, time.Minute, "less than a minute"},
		{60, 60, time.Minute, "about a minute"},
		{58, 0, 0, "less than a minute"}, // unset: Luarmor's 60 a minute
		{61, 60, time.Minute, "about 2 minutes"},
		{75 + 400, 60, time.Minute, "about 8 minutes"},
		{3, 3, time.Hour, "about 60 minutes"},
		{3, 30, 30 * time.Second, "less than a minute"},
		{7200, 60, time.Minute, "about 2 hours"},
		{0, 60, time.Minute, "less than a minute"},
	} {
		require.Equal(t, tc.want, deliveryEstimate(tc.keys, tc.count, tc.window), "%d keys at %d per %s", tc.keys, tc.count, tc.window)
	}
}
