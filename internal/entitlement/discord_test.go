package entitlement_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/entitlement"
)

// Rule 9: a key carries the Discord account its buyer verified, each
// verification applied once; a key to be deleted carries none, a banned
// one keeps it.
func TestDeriveCarriesTheVerifiedDiscordAccountOncePerVerification(t *testing.T) {
	t.Parallel()
	account := entitlement.Discord{ID: "223456789012345678", Verification: 7}
	facts := entitlement.Facts{StartedAt: ptr(t0), Discord: account}
	now := t0 + day

	d := entitlement.Derive([]entitlement.Grant{days(1, 30, t0)}, facts, entitlement.Policy{})
	require.Equal(t, account, d.Discord)
	applied := entitlement.Applied{Expire: t0 + 30*day}
	require.True(t, entitlement.SameAccess(applied, d, now), "its time is what was paid for")
	require.True(t, entitlement.DiscordDue(applied, d))
	require.False(t, entitlement.Same(applied, d, now), "the writer runs for the link alone")

	applied.DiscordVerification = 7
	require.True(t, entitlement.Same(applied, d, now), "a verification acted on is not sent again, whatever the key holds now")

	facts.Discord.Verification = 8 // the buyer verified again
	d = entitlement.Derive([]entitlement.Grant{days(1, 30, t0)}, facts, entitlement.Policy{})
	require.False(t, entitlement.Same(applied, d, now), "a new verification is applied")

	banned := entitlement.Derive([]entitlement.Grant{with(days(1, 30, t0), entitlement.Banned, "Payment disputed")}, facts, entitlement.Policy{})
	require.Equal(t, entitlement.BanPermanent, banned.Ban)
	require.Equal(t, facts.Discord, banned.Discord, "a banned key keeps its link: a link gives no access")

	deleted := entitlement.Derive([]entitlement.Grant{{ID: 1, Kind: entitlement.KindDays, Days: 30, From: t0,
		State: entitlement.Revoked, Action: entitlement.ActionDelete}}, facts, entitlement.Policy{})
	require.True(t, deleted.Delete)
	require.Zero(t, deleted.Discord, "a key to be deleted carries nothing")
	require.Zero(t, entitlement.Derive(nil, facts, entitlement.Policy{}).Discord, "a key of no grants is not written")

	none := entitlement.Derive([]entitlement.Grant{days(1, 30, t0)}, entitlement.Facts{StartedAt: ptr(t0)}, entitlement.Policy{})
	require.False(t, entitlement.DiscordDue(entitlement.Applied{}, none), "no verified account, nothing to link")
}
