package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/jobs"
	"fulfiller/internal/order"
	"fulfiller/internal/stripeapi/stripefake"
)

// admin calls a /v1/admin endpoint with token ("" for none) and returns
// the status and the JSON body.
func (b *bundle) admin(t *testing.T, method, path, body, token string) (int, map[string]any) {
	t.Helper()
	a := b.adminCall(t, method, path, body, token)
	var out map[string]any
	require.NoError(t, json.Unmarshal(a.body, &out), "body: %s", a.body)
	return a.status, out
}

// keyAction asks for a key action through the admin API, requires a 202
// and waits for its job to finish; it returns the job's final state.
func (b *bundle) keyAction(t *testing.T, action, body string) rivertype.JobState {
	t.Helper()
	status, out := b.admin(t, http.MethodPost, "/v1/admin/keys/"+action, body, adminToken)
	require.Equal(t, http.StatusAccepted, status, "%v", out)
	require.Equal(t, "queued", out["status"])
	require.True(t, strings.HasPrefix(out["order_ref"].(string), "ord_"))
	return b.waitJob(t, int64(out["job_id"].(float64)))
}

// waitJob waits until job id is finalized and returns its final state.
func (b *bundle) waitJob(t *testing.T, id int64) rivertype.JobState {
	t.Helper()
	var state rivertype.JobState
	b.WaitJobsUntil(t, fmt.Sprintf("job %d to be finalized", id), func() bool {
		job, err := b.Main.River.JobGet(context.Background(), id)
		require.NoError(t, err)
		state = job.State
		return job.FinalizedAt != nil
	})
	return state
}

func (b *bundle) keyStatus(t *testing.T, userKey string) string {
	t.Helper()
	var status string
	require.NoError(t, b.Pool.QueryRow(context.Background(),
		`SELECT status FROM order_keys WHERE user_key = $1 AND NOT extended_existing`, userKey).Scan(&status))
	return status
}

func TestAdminEndpointsRefuseWithoutTheShopToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	key := o.Keys[0].UserKey
	// One client: its first ten failures are 401s, then the service stops
	// checking its tokens (429) until a failure is allowed again.
	failures := 0
	for _, token := range []string{"", "wrong-token"} {
		for _, c := range []struct{ method, path, body string }{
			{http.MethodGet, "/v1/admin/orders/" + s.ID, ""},
			{http.MethodPost, "/v1/admin/orders/" + s.ID + "/retry", ""},
			{http.MethodPost, "/v1/admin/orders/" + s.ID + "/revocations/issfr_x/lift", ""},
			{http.MethodGet, "/v1/admin/orders?discord=123456789012345678", ""},
			{http.MethodPost, "/v1/admin/orders/search", `{"email":"` + defaultMail + `"}`},
			{http.MethodPost, "/v1/admin/orders/search", keyBody(key)},
			{http.MethodPost, "/v1/admin/keys/blacklist", keyBody(key)},
			{http.MethodPost, "/v1/admin/keys/reissue", keyBody(key)},
		} {
			status, out := b.admin(t, c.method, c.path, c.body, token)
			if failures++; failures <= 10 {
				require.Equal(t, http.StatusUnauthorized, status, "%s %s", c.method, c.path)
				require.Equal(t, "unauthorized", out["code"])
			} else {
				require.Equal(t, http.StatusTooManyRequests, status, "%s %s", c.method, c.path)
			}
		}
	}
	require.Equal(t, 0, b.user(t, key).Banned, "nothing was done")
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM order_keys`))
}

func TestAdminKeyActionsRefuseUnknownKeysAndBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, action := range []string{"blacklist", "unban", "reset-hwid", "revoke", "reissue"} {
		status, out := b.admin(t, http.MethodPost, "/v1/admin/keys/"+action, keyBody("NoSuchKey0123456789"), adminToken)
		require.Equal(t, http.StatusNotFound, status, action)
		require.Equal(t, "not_found", out["code"], action)
	}
	status, _ := b.admin(t, http.MethodPost, "/v1/admin/keys/set-discord", `{"user_key":"NoSuchKey0123456789","discord_id":"123456789012345678"}`, adminToken)
	require.Equal(t, http.StatusNotFound, status)
	for _, c := range []struct{ action, body string }{
		{"blacklist", `{"user_key":"k0123456789","extra":1}`},
		{"blacklist", `{"user_key":""}`},
		{"set-discord", `{"user_key":"k0123456789","discord_id":"name#1234"}`},
		{"set-discord", `{"user_key":"k0123456789"}`},
		{"blacklist", `{"user_key":"k0123456789","discord_id":"123456789012345678"}`},
		{"revoke", `{"user_key":"k0123456789"} {}`},
		{"frobnicate", `{"user_key":"k0123456789"}`},
	} {
		action, body := c.action, c.body
		status, out := b.admin(t, http.MethodPost, "/v1/admin/keys/"+action, body, adminToken)
		require.Equal(t, http.StatusBadRequest, status, "%s %s", action, body)
		require.Equal(t, "invalid", out["code"])
	}
	status, out := b.admin(t, http.MethodGet, "/v1/admin/orders?key=k0123456789", "", adminToken)
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, out["error"], "POST /v1/admin/orders/search")
	rivertest.RequireNotInserted(t.Context(), t, b.jobsDB(), jobs.SupportKeyArgs{}, nil)
}

func TestAdminBlacklistUnbanAndRevokeFollowLuarmorAndRepeatHarmlessly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	key := o.Keys[0].UserKey
	body := `{"user_key":"` + key + `","reason":"Chargeback by phone"}`

	for range 2 {
		require.Equal(t, rivertype.JobStateCompleted, b.keyAction(t, "blacklist", body))
		u := b.user(t, key)
		require.Equal(t, 1, u.Banned)
		require.Equal(t, "Chargeback by phone", u.BanReason)
		require.Equal(t, "blacklisted", b.keyStatus(t, key))
	}
	require.Equal(t, 1, b.Luarmor.CallCount(http.MethodPost, "/users/blacklist"), "the repeat found the key banned and sent nothing")
	_, seen := b.GetOrder(t, s.ID)
	require.Equal(t, "blacklisted", seen.Keys[0].Status, "the order API shows it")

	for range 2 {
		require.Equal(t, rivertype.JobStateCompleted, b.keyAction(t, "unban", keyBody(key)))
		require.Equal(t, 0, b.user(t, key).Banned)
		require.Equal(t, "active", b.keyStatus(t, key))
	}
	require.Equal(t, 1, b.Luarmor.CallCount(http.MethodGet, "/users/unban"), "unbanned once, with the current token")

	for range 2 {
		require.Equal(t, rivertype.JobStateCompleted, b.keyAction(t, "revoke", keyBody(key)))
		u := b.user(t, key)
		require.Equal(t, 1, u.Banned, "REFUND_ACTION blacklist by default")
		require.Equal(t, "Revoked by support", u.BanReason)
		require.Equal(t, "blacklisted", b.keyStatus(t, key))
	}
	require.Equal(t, 2, b.Luarmor.CallCount(http.MethodPost, "/users/blacklist"))
}

func TestAdminResetHWIDBypassesTheBuyersCooldownAndRecordsIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, key := b.boughtKey(t)
	require.Equal(t, http.StatusAccepted, b.resetHWID(t, s.ID, keyBody(key)).status)
	b.waitReset(t, s.ID, key, "done")
	require.Equal(t, http.StatusTooManyRequests, b.resetHWID(t, s.ID, keyBody(key)).status, "the buyer waits out the cooldown")
	require.NoError(t, b.Luarmor.Execute(project, key, "pc-new"))

	for i := range 2 {
		require.Equal(t, rivertype.JobStateCompleted, b.keyAction(t, "reset-hwid", keyBody(key)))
		require.Empty(t, b.user(t, key).Identifier)
		require.Equal(t, 2+i, b.Count(t, `SELECT resets FROM hwid_resets`), "each reset is recorded")
	}
	require.Equal(t, http.StatusTooManyRequests, b.resetHWID(t, s.ID, keyBody(key)).status, "the cooldown restarted")
}

func TestAdminSetDiscordLinksTheIDAndRefusesOneInUse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})
	first, second := o.Keys[0].UserKey, o.Keys[1].UserKey
	body := `{"user_key":"` + first + `","discord_id":"123456789012345678"}`
	for range 2 {
		require.Equal(t, rivertype.JobStateCompleted, b.keyAction(t, "set-discord", body))
		require.Equal(t, "123456789012345678", b.user(t, first).DiscordID)
	}
	require.Equal(t, 1, b.Count(t, `SELECT count(*) FROM order_keys WHERE discord_link = 'linked'`))

	inUse := `{"user_key":"` + second + `","discord_id":"123456789012345678"}`
	require.Equal(t, rivertype.JobStateCancelled, b.keyAction(t, "set-discord", inUse), "one key per Discord ID in a project")
	require.Empty(t, b.user(t, second).DiscordID)
	require.Equal(t, "123456789012345678", b.user(t, first).DiscordID, "never moved")
}

func TestAdminReissueMakesOneNewKeyWithTheOldExpiryAndRevokesTheOld(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	old := o.Keys[0].UserKey
	require.NoError(t, b.Luarmor.Execute(project, old, "pc-1")) // starts its 30 days
	expiry := b.user(t, old).AuthExpire
	require.Positive(t, expiry)

	for range 2 {
		require.Equal(t, rivertype.JobStateCompleted, b.keyAction(t, "reissue", keyBody(old)))
	}
	require.Len(t, b.Luarmor.Users(project), 2, "one new key, however often asked")
	require.Equal(t, 2, b.Count(t, `SELECT count(*) FROM order_keys`))
	require.Equal(t, 1, b.user(t, old).Banned)

	seen := b.WaitOrder(t, s.ID, "fulfilled")
	require.Len(t, seen.Keys, 2)
	require.Equal(t, "blacklisted", seen.Keys[0].Status)
	fresh := seen.Keys[1]
	require.Equal(t, "active", fresh.Status)
	require.NotEqual(t, old, fresh.UserKey)
	u := b.user(t, fresh.UserKey)
	require.Equal(t, expiry, u.AuthExpire, "the new key ends when the old one would have: no days added")
	require.Equal(t, 0, u.Banned)

	status, details := b.admin(t, http.MethodGet, "/v1/admin/orders/"+s.ID, "", adminToken)
	require.Equal(t, http.StatusOK, status)
	reissues := details["reissues"].([]any)
	require.Len(t, reissues, 1)
	require.Equal(t, "done", reissues[0].(map[string]any)["status"])
	require.Equal(t, "admin-token", reissues[0].(map[string]any)["requested_by"])

	// The old key is revoked: it cannot be reissued again.
	status, _ = b.admin(t, http.MethodPost, "/v1/admin/keys/reissue", keyBody(fresh.UserKey), adminToken)
	require.Equal(t, http.StatusAccepted, status, "the new key can be")
}

func TestAdminOrdersShowFindAndRetry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	status, byID := b.admin(t, http.MethodGet, "/v1/admin/orders/"+s.ID, "", adminToken)
	require.Equal(t, http.StatusOK, status)
	ref := byID["order_ref"].(string)
	status, byRef := b.admin(t, http.MethodGet, "/v1/admin/orders/"+ref, "", adminToken)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, byID, byRef)
	require.Equal(t, s.ID, byRef["checkout_session_id"])
	require.NotEmpty(t, byRef["events"])

	for _, email := range []string{defaultMail, "BUYER@example.com"} {
		status, found := b.admin(t, http.MethodPost, "/v1/admin/orders/search", `{"email":"`+email+`"}`, adminToken)
		require.Equal(t, http.StatusOK, status)
		require.NotEmpty(t, found["orders"])
	}
	status, found := b.admin(t, http.MethodPost, "/v1/admin/orders/search", keyBody(o.Keys[0].UserKey), adminToken)
	require.Equal(t, http.StatusOK, status)
	require.Len(t, found["orders"], 1)
	require.Equal(t, ref, found["orders"].([]any)[0].(map[string]any)["order_ref"])

	status, _ = b.admin(t, http.MethodGet, "/v1/admin/orders/ord_000000000000", "", adminToken)
	require.Equal(t, http.StatusNotFound, status)
	status, _ = b.admin(t, http.MethodGet, "/v1/admin/orders/not-an-id", "", adminToken)
	require.Equal(t, http.StatusBadRequest, status)
	status, out := b.admin(t, http.MethodPost, "/v1/admin/orders/"+ref+"/retry", "", adminToken)
	require.Equal(t, http.StatusBadRequest, status, "a fulfilled order has nothing to retry")
	require.Contains(t, out["error"], "not failed")
}

// A key support banned stays banned when a dispute of its payment is won:
// winning hands back what the dispute took, not what support took. Only
// support's unban lifts it.
func TestDisputeWonKeepsABanSupportMade(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})
	banned, other := o.Keys[0].UserKey, o.Keys[1].UserKey
	require.Equal(t, rivertype.JobStateCompleted, b.keyAction(t, "blacklist", `{"user_key":"`+banned+`","reason":"Key shared"}`))

	ch := b.charge(t, s.PaymentIntent, "")
	dp := fulfillertest.NewID("dp_")
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", dp, ch, s.PaymentIntent, "needs_response"))
	b.waitKeys(t, s.ID, "revoked", "blacklisted")
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.closed", dp, ch, s.PaymentIntent, "won"))
	b.waitIdle(t)

	require.Equal(t, 0, b.user(t, other).Banned, "the dispute's ban is lifted")
	require.Equal(t, "active", b.keyStatus(t, other))
	u := b.user(t, banned)
	require.Equal(t, 1, u.Banned, "support's ban holds")
	require.Equal(t, "Key shared", u.BanReason)
	require.Equal(t, "blacklisted", b.keyStatus(t, banned))

	require.Equal(t, rivertype.JobStateCompleted, b.keyAction(t, "unban", keyBody(banned)))
	require.Equal(t, 0, b.user(t, banned).Banned)
	require.Equal(t, "active", b.keyStatus(t, banned))
}

// Support lifts an early fraud warning's revocation through the path a won
// dispute takes: the keys it banned work again, a key support banned keeps
// its ban, and a later copy of the warning revokes nothing. Only an active
// fraud warning of the order's payment is lifted here.
func TestAdminLiftsAnEarlyFraudWarningsRevocation(t *testing.T) {
	t.Parallel()
	b := setup(t, withPolicy(func(p *order.Policy) { p.RevokeOnEarlyFraudWarning = true }))
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 2})
	warned, banned := o.Keys[0].UserKey, o.Keys[1].UserKey
	require.Equal(t, rivertype.JobStateCompleted, b.keyAction(t, "blacklist", `{"user_key":"`+banned+`","reason":"Key shared"}`))
	ch := b.charge(t, s.PaymentIntent, "")
	efw := fulfillertest.NewID("issfr_")
	warning := func() []byte {
		return fulfillertest.Event(t, "radar.early_fraud_warning.created", mustJSON(t, map[string]any{
			"id": efw, "object": "radar.early_fraud_warning", "charge": ch, "payment_intent": s.PaymentIntent,
			"fraud_type": "made_with_stolen_card", "actionable": true,
		}))
	}
	b.Deliver(t, warning())
	b.waitKeys(t, s.ID, "revoked", "blacklisted")
	b.waitIdle(t)
	require.Equal(t, order.FraudWarningBanReason, b.user(t, warned).BanReason)
	lift := func(idOrRef, sourceID string) (int, map[string]any) {
		return b.admin(t, http.MethodPost, "/v1/admin/orders/"+idOrRef+"/revocations/"+sourceID+"/lift", "", adminToken)
	}

	// Not a source ID; a revocation the order's payment does not have; a
	// dispute's, which Stripe's outcome lifts.
	status, _ := lift(s.ID, "not-a-source")
	require.Equal(t, http.StatusBadRequest, status)
	status, _ = lift(s.ID, fulfillertest.NewID("issfr_"))
	require.Equal(t, http.StatusNotFound, status)
	other, _ := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	status, _ = lift(other.ID, efw)
	require.Equal(t, http.StatusNotFound, status, "the warning is not of this order's payment")
	dp := fulfillertest.NewID("dp_")
	b.Deliver(t, b.disputeEvent(t, "charge.dispute.created", dp, b.charge(t, other.PaymentIntent, ""), other.PaymentIntent, "needs_response"))
	b.waitKeys(t, other.ID, "revoked", "blacklisted")
	status, out := lift(other.ID, dp)
	require.Equal(t, http.StatusConflict, status)
	require.Contains(t, out["error"], "Stripe's outcome lifts it")

	status, out = lift(s.ID, efw)
	require.Equal(t, http.StatusAccepted, status, "%v", out)
	require.Equal(t, "lift-revocation", out["action"])
	require.Equal(t, "queued", out["status"])
	require.True(t, strings.HasPrefix(out["order_ref"].(string), "ord_"))
	require.Equal(t, rivertype.JobStateCompleted, b.waitJob(t, int64(out["job_id"].(float64))))
	b.waitIdle(t)

	require.Equal(t, 0, b.user(t, warned).Banned, "the warning's ban is lifted")
	require.Equal(t, "active", b.keyStatus(t, warned))
	require.Equal(t, 1, b.user(t, banned).Banned, "support's ban holds")
	require.Equal(t, "Key shared", b.user(t, banned).BanReason)
	require.Equal(t, "blacklisted", b.keyStatus(t, banned))
	_, details := b.admin(t, http.MethodGet, "/v1/admin/orders/"+s.ID, "", adminToken)
	require.Equal(t, "fulfilled", details["status"])
	revocations := details["revocations"].([]any)
	require.Len(t, revocations, 1)
	require.Equal(t, "lifted", revocations[0].(map[string]any)["status"])

	// Lifted already; and the warning sent again revokes nothing.
	status, out = lift(s.ID, efw)
	require.Equal(t, http.StatusConflict, status)
	require.Contains(t, out["error"], "lifted already")
	b.Deliver(t, warning())
	b.waitIdle(t)
	require.Equal(t, 0, b.user(t, warned).Banned)
	require.Equal(t, "active", b.keyStatus(t, warned))
}

// A reissue carries the old key's Discord link over: the new key holds the
// buyer's Discord ID, the revoked one none.
func TestAdminReissueMovesTheDiscordLink(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, o := b.discordOrder(t, discordA, "", stripefake.Item{PriceID: priceMonth, Quantity: 1})
	old := o.Keys[0].UserKey
	require.Equal(t, discordA, b.user(t, old).DiscordID)

	require.Equal(t, rivertype.JobStateCompleted, b.keyAction(t, "reissue", keyBody(old)))
	var seen httpapi.OrderJSON
	b.WaitJobsUntil(t, "the new key's link recorded", func() bool {
		_, seen = b.GetOrder(t, s.ID)
		return len(seen.Keys) == 2 && seen.Keys[1].DiscordLink == "linked"
	})
	fresh := seen.Keys[1].UserKey
	require.Equal(t, discordA, b.user(t, fresh).DiscordID, "the new key holds the buyer's Discord ID")
	oldUser := b.user(t, old)
	require.Empty(t, oldUser.DiscordID, "the revoked key gave it up")
	require.Equal(t, 1, oldUser.Banned)
}
