package entitlement_test

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/entitlement"
)

const day = 86400

// t0 is an arbitrary moment the cases count from.
const t0 = int64(1_800_000_000)

func ptr(v int64) *int64 { return &v }

func days(id int64, n int, paid int64) entitlement.Grant {
	return entitlement.Grant{ID: id, Kind: entitlement.KindDays, Days: n, From: paid, State: entitlement.Active}
}

func period(id int64, sub string, from, to int64) entitlement.Grant {
	return entitlement.Grant{ID: id, Kind: entitlement.KindPeriod, Line: sub, From: from, To: to, State: entitlement.Active}
}

func with(g entitlement.Grant, s entitlement.State, reason string) entitlement.Grant {
	g.State, g.Reason = s, reason
	return g
}

func TestDerive(t *testing.T) {
	grace := entitlement.Policy{GraceSeconds: day}
	started := entitlement.Facts{StartedAt: ptr(t0)}
	cases := []struct {
		rule   string
		grants []entitlement.Grant
		facts  entitlement.Facts
		policy entitlement.Policy
		want   entitlement.Desired
	}{
		{
			rule:   "a key with no grant is not the ledger's",
			grants: nil,
			want:   entitlement.Desired{Unknown: true},
		},
		{
			rule:   "8: a one-time key waits for first use with its key_days",
			grants: []entitlement.Grant{days(1, 30, t0)},
			facts:  entitlement.Facts{WaitingDays: 30},
			want:   entitlement.Desired{WaitingDays: 30},
		},
		{
			rule:   "8: days added to a waiting key start its clock",
			grants: []entitlement.Grant{days(1, 30, t0), days(2, 30, t0+5*day)},
			facts:  entitlement.Facts{WaitingDays: 30},
			want:   entitlement.Desired{Start: true},
		},
		{
			rule:   "8: a period granted to a waiting key starts its clock",
			grants: []entitlement.Grant{days(1, 30, t0), period(2, "sub_1", t0+5*day, t0+35*day)},
			facts:  entitlement.Facts{WaitingDays: 30},
			policy: grace,
			want:   entitlement.Desired{Start: true},
		},
		{
			rule:   "1: a started key runs its days from its start",
			grants: []entitlement.Grant{days(1, 30, t0-day)},
			facts:  started,
			want:   entitlement.Desired{Expire: t0 + 30*day},
		},
		{
			rule:   "1: two one-time purchases add up",
			grants: []entitlement.Grant{days(1, 30, t0), days(2, 30, t0+10*day)},
			facts:  started,
			want:   entitlement.Desired{Expire: t0 + 60*day},
		},
		{
			rule:   "1: days paid after the key ran out start when paid, the lapse is not back-filled",
			grants: []entitlement.Grant{days(1, 30, t0), days(2, 30, t0+50*day)},
			facts:  started,
			want:   entitlement.Desired{Expire: t0 + 80*day},
		},
		{
			rule: "1: a started 30-day key, then a monthly subscription renewed once: 30 + 62 days (+ grace)",
			grants: []entitlement.Grant{
				days(1, 30, t0),
				period(2, "sub_1", t0+5*day, t0+36*day),
				period(3, "sub_1", t0+36*day, t0+67*day),
			},
			facts:  started,
			policy: grace,
			want:   entitlement.Desired{Expire: t0 + 92*day + day},
		},
		{
			rule: "1: the same purchases arriving the other way round give the same key",
			grants: []entitlement.Grant{
				period(7, "sub_1", t0+36*day, t0+67*day),
				days(9, 30, t0),
				period(8, "sub_1", t0+5*day, t0+36*day),
			},
			facts:  started,
			policy: grace,
			want:   entitlement.Desired{Expire: t0 + 92*day + day},
		},
		{
			rule:   "3: a subscription key runs to its period's end plus the grace",
			grants: []entitlement.Grant{period(1, "sub_1", t0, t0+31*day)},
			policy: grace,
			want:   entitlement.Desired{Expire: t0 + 32*day},
		},
		{
			rule: "2: monthly moved to yearly mid-period: the periods merge, the unused month is not added",
			grants: []entitlement.Grant{
				period(1, "sub_1", t0, t0+31*day),
				period(2, "sub_1", t0+10*day, t0+375*day),
			},
			policy: grace,
			want:   entitlement.Desired{Expire: t0 + 375*day + day},
		},
		{
			rule: "1: two subscriptions on one key add up",
			grants: []entitlement.Grant{
				period(1, "sub_1", t0, t0+30*day),
				period(2, "sub_2", t0+10*day, t0+40*day),
			},
			want: entitlement.Desired{Expire: t0 + 60*day},
		},
		{
			rule: "1: unpaid, then paid again: the gap is not back-filled",
			grants: []entitlement.Grant{
				period(1, "sub_1", t0, t0+30*day),
				period(2, "sub_1", t0+60*day, t0+90*day),
			},
			want: entitlement.Desired{Expire: t0 + 90*day},
		},
		{
			rule:   "4: a lifetime purchase never expires",
			grants: []entitlement.Grant{days(1, 30, t0), {ID: 2, Kind: entitlement.KindLifetime, From: t0, State: entitlement.Active}},
			facts:  started,
			want:   entitlement.Desired{Lifetime: true},
		},
		{
			rule: "5: a refunded renewal takes back that period only; the key stays unbanned",
			grants: []entitlement.Grant{
				period(1, "sub_1", t0, t0+31*day),
				with(period(2, "sub_1", t0+31*day, t0+62*day), entitlement.Revoked, "Payment refunded"),
			},
			policy: grace,
			want:   entitlement.Desired{Expire: t0 + 31*day + day},
		},
		{
			rule: "1, 5: a period paid after a refunded one still counts, from its own start",
			grants: []entitlement.Grant{
				period(1, "sub_1", t0, t0+31*day),
				with(period(2, "sub_1", t0+31*day, t0+62*day), entitlement.Revoked, "Payment refunded"),
				period(3, "sub_1", t0+62*day, t0+93*day),
			},
			policy: grace,
			want:   entitlement.Desired{Expire: t0 + 93*day + day},
		},
		{
			rule: "5: revoking the later one-time purchase takes back its days, never the first's",
			grants: []entitlement.Grant{
				days(1, 30, t0),
				with(days(2, 30, t0+10*day), entitlement.Revoked, "Payment refunded"),
			},
			facts: started,
			want:  entitlement.Desired{Expire: t0 + 30*day},
		},
		{
			rule: "5: revoking the first purchase of a shared key keeps the later one's days",
			grants: []entitlement.Grant{
				with(days(1, 30, t0), entitlement.Revoked, "Payment refunded"),
				days(2, 30, t0+10*day),
			},
			facts: started,
			want:  entitlement.Desired{Expire: t0 + 40*day},
		},
		{
			rule: "7: the last payment holding a key revoked: the refund's action, blacklist",
			grants: []entitlement.Grant{
				{ID: 1, Kind: entitlement.KindDays, Days: 30, From: t0, State: entitlement.Revoked, Reason: "Payment refunded", Action: entitlement.ActionBlacklist},
			},
			facts: started,
			want:  entitlement.Desired{Expire: t0, Ban: entitlement.BanPermanent, BanReason: "Payment refunded"},
		},
		{
			rule: "7: the last payment holding a key revoked: the refund's action, delete",
			grants: []entitlement.Grant{
				{ID: 1, Kind: entitlement.KindDays, Days: 30, From: t0, State: entitlement.Revoked, Action: entitlement.ActionDelete},
			},
			facts: started,
			want:  entitlement.Desired{Delete: true},
		},
		{
			rule: "6: a chargeback bans the key for good, whatever else holds it",
			grants: []entitlement.Grant{
				days(1, 30, t0),
				with(days(2, 30, t0+day), entitlement.Banned, "Payment disputed"),
			},
			facts: started,
			want:  entitlement.Desired{Expire: t0 + 30*day, Ban: entitlement.BanPermanent, BanReason: "Payment disputed"},
		},
		{
			rule: "6: an inquiry suspends the key and its time still counts",
			grants: []entitlement.Grant{
				with(days(1, 30, t0), entitlement.Suspended, "Payment under review"),
			},
			facts: started,
			want:  entitlement.Desired{Expire: t0 + 30*day, Ban: entitlement.BanSuspended, BanReason: "Payment under review"},
		},
		{
			rule:   "6: support's ban outranks a suspension",
			grants: []entitlement.Grant{with(days(1, 30, t0), entitlement.Suspended, "Payment under review")},
			facts:  entitlement.Facts{StartedAt: ptr(t0), SupportBan: "Key shared publicly"},
			want:   entitlement.Desired{Expire: t0 + 30*day, Ban: entitlement.BanPermanent, BanReason: "Key shared publicly"},
		},
		{
			rule:   "6: support's revocation under REFUND_ACTION=delete deletes the key whatever still pays for it",
			grants: []entitlement.Grant{days(1, 30, t0), period(2, "sub_1", t0, t0+30*day)},
			facts:  entitlement.Facts{StartedAt: ptr(t0), SupportBan: "Revoked by support", SupportDelete: true},
			want:   entitlement.Desired{Delete: true},
		},
		{
			rule:   "6: a deletion is support's only while its ban holds",
			grants: []entitlement.Grant{days(1, 30, t0)},
			facts:  entitlement.Facts{StartedAt: ptr(t0), SupportDelete: true},
			want:   entitlement.Desired{Expire: t0 + 30*day},
		},
	}
	for _, c := range cases {
		t.Run(c.rule, func(t *testing.T) {
			got := entitlement.Derive(c.grants, c.facts, c.policy)
			got.Began = 0 // TestDeriveBegan
			require.Equal(t, c.want, got)
		})
	}
}

// The moment a key's absolute time begins: its recorded start, or for a
// key that has not started, its earliest counted period.
func TestDeriveBegan(t *testing.T) {
	require.Equal(t, t0, entitlement.Derive([]entitlement.Grant{days(1, 30, t0-day)}, entitlement.Facts{StartedAt: ptr(t0)}, entitlement.Policy{}).Began)
	// A subscription's own key, which never waited for first use.
	require.Equal(t, t0+5*day, entitlement.Derive([]entitlement.Grant{
		days(1, 30, t0), period(2, "sub_1", t0+9*day, t0+40*day), period(3, "sub_1", t0+5*day, t0+9*day),
	}, entitlement.Facts{}, entitlement.Policy{}).Began)
	require.Zero(t, entitlement.Derive([]entitlement.Grant{days(1, 30, t0)}, entitlement.Facts{WaitingDays: 30}, entitlement.Policy{}).Began,
		"a key waiting for first use has not begun")
}

func TestSameTreatsEveryPastExpiryAlike(t *testing.T) {
	now := t0 + 100*day
	past := entitlement.Desired{Expire: t0}
	require.True(t, entitlement.Same(entitlement.Applied{Expire: t0 + 50*day}, past, now))
	require.False(t, entitlement.Same(entitlement.Applied{Expire: now + day}, past, now))
	require.Equal(t, now, entitlement.ExpireToSend(past, now), "an expiry is never set below now")
	require.False(t, entitlement.Same(entitlement.Applied{Expire: now + day}, entitlement.Desired{Expire: now + day, Ban: entitlement.BanSuspended}, now))
	require.True(t, entitlement.Same(entitlement.Applied{Deleted: true}, entitlement.Desired{Delete: true}, now))
}

// randomLedger makes a ledger of one customer's payments on one key:
// one-time purchases, periods of up to two subscriptions (renewals,
// plan changes that overlap), some revoked, suspended or banned.
func randomLedger(r *rand.Rand) ([]entitlement.Grant, entitlement.Facts) {
	n := 1 + r.IntN(8)
	var gs []entitlement.Grant
	for i := range n {
		id := int64(i + 1)
		at := t0 + int64(r.IntN(200))*day
		var g entitlement.Grant
		switch r.IntN(5) {
		case 0, 1:
			g = days(id, 1+r.IntN(90), at)
		case 2, 3:
			g = period(id, []string{"sub_a", "sub_b"}[r.IntN(2)], at, at+int64(28+r.IntN(340))*day)
		default:
			if r.IntN(4) == 0 {
				g = entitlement.Grant{ID: id, Kind: entitlement.KindLifetime, From: at, State: entitlement.Active}
			} else {
				g = days(id, 7, at)
			}
		}
		switch r.IntN(10) {
		case 0:
			g.State, g.Reason, g.Action = entitlement.Revoked, "Payment refunded", entitlement.ActionBlacklist
		case 1:
			g.State, g.Reason = entitlement.Suspended, "Payment under review"
		case 2:
			g.State, g.Reason = entitlement.Banned, "Payment disputed"
		}
		gs = append(gs, g)
	}
	f := entitlement.Facts{}
	if r.IntN(3) > 0 {
		f.StartedAt = ptr(t0 + int64(r.IntN(30))*day)
	} else {
		f.WaitingDays = 1 + r.IntN(90)
	}
	return gs, f
}

func counted(g entitlement.Grant) bool {
	return g.State == entitlement.Active || g.State == entitlement.Suspended
}

// TestDeriveProperties checks, over many random ledgers, what the rules
// promise for every ledger: the order grants are recorded in never
// matters; revoking a grant never gives time; granting never takes time;
// the days of different one-time payments add up exactly.
func TestDeriveProperties(t *testing.T) {
	const ledgers = 20000
	policy := entitlement.Policy{GraceSeconds: day}
	r := rand.New(rand.NewPCG(1, 2))
	for range ledgers {
		gs, f := randomLedger(r)
		want := entitlement.Derive(gs, f, policy)

		// Any order of the same grants.
		shuffled := append([]entitlement.Grant(nil), gs...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		require.Equal(t, want, entitlement.Derive(shuffled, f, policy), "order of grants changed the key: %+v", gs)

		// Revoking: a key whose clock has started has a fixed beginning,
		// so taking a credit away can only end it sooner. (A key that never
		// waited starts with its first period: without that period its
		// days start later, which is no time given.)
		if want.Start || want.WaitingDays > 0 || want.Unknown || f.StartedAt == nil {
			continue
		}
		for i, g := range gs {
			if !counted(g) || g.Kind == entitlement.KindLifetime {
				continue
			}
			less := append([]entitlement.Grant(nil), gs...)
			less[i].State, less[i].Action = entitlement.Revoked, entitlement.ActionBlacklist
			got := entitlement.Derive(less, f, policy)
			if got.Lifetime || got.Delete || got.Start {
				continue
			}
			if !want.Lifetime {
				require.LessOrEqual(t, got.Expire, want.Expire, "revoking grant %d gave time: %+v", g.ID, gs)
			}
		}
	}
}

// TestDaysOfOneTimePaymentsAddUpExactly: for a started key, one-time
// purchases paid while it runs extend it by exactly their days, in any
// order, and revoking any one takes back exactly its days.
func TestDaysOfOneTimePaymentsAddUpExactly(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 5000 {
		n := 1 + r.IntN(6)
		var gs []entitlement.Grant
		total := 0
		for i := range n {
			d := 1 + r.IntN(60)
			total += d
			// The first paid before the key started, the others while it
			// still runs (within its first day).
			paid := t0 - day
			if i > 0 {
				paid = t0 + int64(r.IntN(day))
			}
			gs = append(gs, days(int64(i+1), d, paid))
		}
		f := entitlement.Facts{StartedAt: ptr(t0)}
		got := entitlement.Derive(gs, f, entitlement.Policy{})
		require.Equal(t, t0+int64(total)*day, got.Expire)
		if n == 1 {
			continue
		}
		// Revoking a later purchase takes back exactly its days. (Revoking
		// the first one lets the others start only when they were paid.)
		i := 1 + r.IntN(n-1)
		gs[i].State = entitlement.Revoked
		require.Equal(t, t0+int64(total-gs[i].Days)*day, entitlement.Derive(gs, f, entitlement.Policy{}).Expire)
	}
}
