package jobs

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/luarmor"
	"fulfiller/internal/order"
)

func TestRevertedExpiryTakesBackOnlyThePurchasesDays(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	d := int64(86400)
	ptr := func(v int64) *int64 { return &v }
	started := func(expire int64) luarmor.User { return luarmor.User{AuthExpire: expire} }

	// A key paid until now+10d got 30 more days.
	target, from := extendedExpiry(started(now.Unix()+10*d), 30, now)
	require.Equal(t, now.Unix()+40*d, target)
	k := order.Key{KeyDays: 30, ExtendTarget: &target, ExtendFrom: &from}
	later := now.Unix() + 5*d
	require.Equal(t, from, revertedExpiry(started(target), k, 0, later), "back to its own paid time")
	require.Equal(t, from+20*d, revertedExpiry(started(target+20*d), k, 0, later), "days added since stay")
	require.Equal(t, from+50*d, revertedExpiry(started(from+50*d), k, from+50*d, later), "never below a renewal of another payment")
	require.Equal(t, from-d, revertedExpiry(started(from-d), k, 0, later), "never lengthened")

	// A lapsed key was extended from the moment of the purchase: taking
	// the days back leaves it lapsed at that moment.
	target, from = extendedExpiry(started(now.Unix()-3*d), 30, now)
	k = order.Key{KeyDays: 30, ExtendTarget: &target, ExtendFrom: &from}
	require.Equal(t, now.Unix(), revertedExpiry(started(target), k, 0, later))

	// A lifetime purchase made the key lifetime: it goes back.
	target, from = extendedExpiry(started(now.Unix()+10*d), 0, now)
	require.Equal(t, luarmor.NeverExpires, target)
	k = order.Key{KeyDays: 0, ExtendTarget: &target, ExtendFrom: &from}
	require.Equal(t, now.Unix()+10*d, revertedExpiry(started(luarmor.NeverExpires), k, 0, later))

	// A key that was lifetime before is left lifetime.
	k = order.Key{KeyDays: 30, ExtendTarget: ptr(luarmor.NeverExpires), ExtendFrom: ptr(luarmor.NeverExpires)}
	require.Equal(t, luarmor.NeverExpires, revertedExpiry(started(luarmor.NeverExpires), k, 0, later))

	// An extension recorded before extend_from existed: at least now.
	k = order.Key{KeyDays: 30, ExtendTarget: ptr(now.Unix() + 31*d)}
	require.Equal(t, later, revertedExpiry(started(now.Unix()+31*d), k, 0, later))
}
