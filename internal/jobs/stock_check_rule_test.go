package jobs

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/luarmor"
)

// TestSoldStockKeyFaultCountsOnlyWhatTheBuyerCannotHaveDone checks the
// rule settleSoldStockKey replaces keys by, on Luarmor's user object as a
// read right after the sale shows it.
func TestSoldStockKeyFaultCountsOnlyWhatTheBuyerCannotHaveDone(t *testing.T) {
	t.Parallel()
	sale := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	const days = 7
	fresh := luarmor.User{UserKey: "k", Status: luarmor.StatusReset, AuthExpire: luarmor.NeverExpires, KeyDays: days}
	// started is fresh as a first run at at leaves it.
	started := func(at time.Time) luarmor.User {
		u := fresh
		u.AuthExpire, u.KeyDays = at.Unix()+days*86400, 0
		u.Identifier, u.Status, u.TotalExecutions = "pc", luarmor.StatusActive, 1
		return u
	}
	with := func(u luarmor.User, f func(*luarmor.User)) luarmor.User { f(&u); return u }
	const buyer = "444444444444444444"

	for _, c := range []struct {
		name    string
		u       luarmor.User
		keyDays int
		faulty  bool
	}{
		{"fresh", fresh, days, false},
		{"banned, never run", with(fresh, func(u *luarmor.User) { u.Banned = 1 }), days, true},
		{"banned status, never run", with(fresh, func(u *luarmor.User) { u.Status = luarmor.StatusBanned }), days, true},
		{"run before the sale, then banned", with(started(sale.Add(-time.Hour)), func(u *luarmor.User) { u.Banned = 1 }), days, true},
		{"run by its buyer, then banned by the shop", with(started(sale.Add(time.Second)), func(u *luarmor.User) { u.Banned = 1 }), days, false},
		{"run an hour before the sale", started(sale.Add(-time.Hour)), days, true},
		{"run by its buyer right after the sale", started(sale.Add(2 * time.Second)), days, false},
		{"run within the clock skew before the sale", started(sale.Add(-stockClockSkew / 2)), days, false},
		{"run just past the clock skew before the sale", started(sale.Add(-stockClockSkew - time.Second)), days, true},
		{"run by its buyer, who linked another Discord", with(started(sale.Add(time.Second)), func(u *luarmor.User) { u.DiscordID = "555555555555555555" }), days, false},
		{"HWID set, never run", with(fresh, func(u *luarmor.User) { u.Identifier, u.Status = "pc", luarmor.StatusActive }), days, true},
		{"another Discord, never run", with(fresh, func(u *luarmor.User) { u.DiscordID = "555555555555555555" }), days, true},
		{"the buyer's Discord, never run", with(fresh, func(u *luarmor.User) { u.DiscordID = buyer }), days, false},
		{"executed, timer not started", with(fresh, func(u *luarmor.User) { u.TotalExecutions = 2 }), days, true},
		{"reset before the sale", with(started(sale.Add(time.Second)), func(u *luarmor.User) {
			u.TotalResets, u.LastReset = 1, sale.Add(-2*time.Hour).Unix()
		}), days, true},
		{"reset by its buyer after the sale", with(started(sale.Add(time.Second)), func(u *luarmor.User) {
			u.TotalResets, u.LastReset = 1, sale.Add(5*time.Second).Unix()
		}), days, false},
		{"lifetime, fresh", with(fresh, func(u *luarmor.User) { u.KeyDays = 0 }), 0, false},
		{"lifetime, run (by whom cannot be told)", with(fresh, func(u *luarmor.User) {
			u.KeyDays, u.Identifier, u.TotalExecutions, u.DiscordID = 0, "pc", 4, "555555555555555555"
		}), 0, false},
		{"lifetime, banned", with(fresh, func(u *luarmor.User) { u.KeyDays, u.Banned = 0, 1 }), 0, true},
		{"lifetime, an expiry set on it", with(fresh, func(u *luarmor.User) { u.KeyDays, u.AuthExpire = 0, sale.Add(48*time.Hour).Unix() }), 0, true},
	} {
		why := soldStockKeyFault(c.u, c.keyDays, buyer, sale)
		require.Equal(t, c.faulty, why != "", "%s: %q", c.name, why)
	}
}
