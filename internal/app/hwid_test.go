package app_test

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/jobs"
	"fulfiller/internal/logging"
	"fulfiller/internal/logging/logtest"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi/stripefake"
)

type resetAnswer struct {
	status     int
	retryAfter string
	body       map[string]any
}

// resetHWID asks for the HWID reset of userKey through the order API.
func (b *bundle) resetHWID(t *testing.T, sessionID, body string) resetAnswer {
	t.Helper()
	got := b.call(t, http.MethodPost, "/v1/orders/"+sessionID+"/reset-hwid", body, "", "")
	a := resetAnswer{status: got.status, retryAfter: got.header.Get("Retry-After")}
	got.decode(t, &a.body)
	return a
}

func keyBody(userKey string) string { return `{"user_key":"` + userKey + `"}` }

// boughtKey buys one key of project, binds it to a machine and returns the
// order and the key.
func (b *bundle) boughtKey(t *testing.T) (stripefake.Session, string) {
	t.Helper()
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	key := o.Keys[0].UserKey
	require.NoError(t, b.Luarmor.Execute(project, key, "pc-old"))
	b.readKeysAgain(t) // the service sees the key bound
	return s, key
}

// waitReset waits until the order API shows the key's reset in status.
// The reset's job writes it (a reset is not an order change the service
// notifies), so the order is read again as jobs end.
func (b *bundle) waitReset(t *testing.T, sessionID, userKey, status string) httpapi.HWIDResetJSON {
	t.Helper()
	var last httpapi.HWIDResetJSON
	b.WaitJobsUntil(t, "the reset "+status, func() bool {
		code, o := b.GetOrder(t, sessionID)
		if code != http.StatusOK {
			return false
		}
		for _, k := range o.Keys {
			if k.UserKey == userKey {
				last = k.HWIDReset
			}
		}
		return last.Status == status
	})
	return last
}

// resetJobsIn requires the reset_hwid jobs queued so far to be n, each in
// state.
func (b *bundle) resetJobsIn(t *testing.T, n int, state rivertype.JobState) []*rivertype.JobRow {
	t.Helper()
	want := make([]rivertest.ExpectedJob, n)
	for i := range want {
		want[i] = rivertest.ExpectedJob{Args: jobs.ResetHWIDArgs{}, Opts: &rivertest.RequireInsertedOpts{State: state}}
	}
	return rivertest.RequireManyInserted(t.Context(), t, b.jobsDB(), want)
}

func TestHWIDResetClearsTheHWIDAndHoldsTheCooldown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, key := b.boughtKey(t)
	_, o := b.GetOrder(t, s.ID)
	require.Equal(t, httpapi.HWIDResetJSON{Status: "none"}, o.Keys[0].HWIDReset, "never reset: allowed now")

	before := time.Now()
	a := b.resetHWID(t, s.ID, keyBody(key))
	require.Equal(t, http.StatusAccepted, a.status, a.body)
	require.Equal(t, key, a.body["user_key"])
	require.Equal(t, "queued", a.body["status"])
	next := int64(a.body["next_reset_at"].(float64))
	require.GreaterOrEqual(t, next, before.Add(24*time.Hour).Unix(), "the default cooldown is a day")
	require.LessOrEqual(t, next, time.Now().Add(24*time.Hour).Unix())

	r := b.waitReset(t, s.ID, key, "done")
	require.NotNil(t, r.LastResetAt)
	require.GreaterOrEqual(t, *r.LastResetAt, before.Unix())
	require.Equal(t, &next, r.NextResetAt)
	require.Empty(t, r.Message)
	u := b.user(t, key)
	require.Empty(t, u.Identifier, "Luarmor cleared the HWID")
	require.Equal(t, 1, u.TotalResets)
	require.NoError(t, b.Luarmor.Execute(project, key, "pc-new"), "the key runs on the new machine")

	// The shop's listings show the same reset.
	listed := b.call(t, http.MethodPost, "/v1/keys/search", `{"email":"`+s.CustomerEmail+`"}`, "", shopToken)
	require.Equal(t, http.StatusOK, listed.status, string(listed.body))
	var listing httpapi.KeyListingJSON
	listed.decode(t, &listing)
	require.Len(t, listing.Keys, 1)
	require.Equal(t, r, listing.Keys[0].HWIDReset)

	// Sent with force: the shop's cooldown is the service's setting.
	var sent []string
	for _, c := range b.Luarmor.Calls() {
		if strings.HasSuffix(c.Path, "/users/resethwid") {
			sent = append(sent, string(c.Body))
		}
	}
	require.Equal(t, []string{`{"user_key":"` + key + `","force":true}`}, sent)

	// Within the cooldown: refused with when the next reset is allowed.
	a = b.resetHWID(t, s.ID, keyBody(key))
	require.Equal(t, http.StatusTooManyRequests, a.status)
	require.Equal(t, "cooldown", a.body["code"])
	require.Equal(t, float64(next), a.body["next_reset_at"])
	retryAfter, err := strconv.Atoi(a.retryAfter)
	require.NoError(t, err)
	require.InDelta(t, time.Until(time.Unix(next, 0)).Seconds(), retryAfter, 60)
	nextText := time.Unix(next, 0).UTC().Format("2006-01-02 15:04:05")
	require.Contains(t, a.body["error"], "this key's HWID was reset at ")
	require.Contains(t, a.body["error"], "; the next reset is allowed at "+nextText+" (UTC)")
	b.resetJobsIn(t, 1, rivertype.JobStateCompleted) // a refused request queues nothing
	require.Equal(t, 1, b.user(t, key).TotalResets)
}

func TestConcurrentHWIDResetsAcceptExactlyOne(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, key := b.boughtKey(t)
	const n = 5 // the client's burst: none is rate limited
	statuses := make([]int, n)
	codes := make([]any, n)
	concurrently(n, func(i int) {
		a := b.resetHWID(t, s.ID, keyBody(key))
		statuses[i], codes[i] = a.status, a.body["code"]
	})
	accepted := 0
	for i := range statuses {
		if statuses[i] == http.StatusAccepted {
			accepted++
			continue
		}
		require.Equal(t, http.StatusTooManyRequests, statuses[i])
		require.Equal(t, "cooldown", codes[i])
	}
	require.Equal(t, 1, accepted)
	b.waitReset(t, s.ID, key, "done")
	b.waitIdle(t)
	rivertest.RequireInserted(t.Context(), t, b.jobsDB(), jobs.ResetHWIDArgs{}, nil)
	require.Equal(t, 1, b.user(t, key).TotalResets)
}

func TestHWIDResetIsAcceptedAgainOnceTheCooldownPassed(t *testing.T) {
	t.Parallel()
	b := setup(t, withConfig(func(c *config.Config) { c.HWIDResetCooldown = 2 * time.Second }))
	s, key := b.boughtKey(t)
	a := b.resetHWID(t, s.ID, keyBody(key))
	require.Equal(t, http.StatusAccepted, a.status, a.body)
	next := time.Unix(int64(a.body["next_reset_at"].(float64)), 0)
	b.waitReset(t, s.ID, key, "done")
	require.NoError(t, b.Luarmor.Execute(project, key, "pc-2"))

	time.Sleep(time.Until(next.Add(time.Second))) // the cooldown ends within 3 s
	r := b.waitReset(t, s.ID, key, "done")
	require.Nil(t, r.NextResetAt, "allowed now")
	a = b.resetHWID(t, s.ID, keyBody(key))
	require.Equal(t, http.StatusAccepted, a.status, a.body)
	b.waitIdle(t)
	b.resetJobsIn(t, 2, rivertype.JobStateCompleted)
	require.Equal(t, 2, b.user(t, key).TotalResets)
	require.Empty(t, b.user(t, key).Identifier)
	require.Equal(t, 2, b.Count(t, `SELECT resets FROM hwid_resets`))
}

func TestHWIDResetRefusesRevokedKeysAndOtherOrdersKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, key := b.boughtKey(t)
	other, otherKey := b.boughtKey(t)
	stripeReads := len(b.Stripe.Requests())

	// A key of another order, an unknown order and a malformed ID are
	// answered alike, and none is looked up in Stripe.
	notFound := []resetAnswer{
		b.resetHWID(t, s.ID, keyBody(otherKey)),
		b.resetHWID(t, fulfillertest.NewID("cs_test_"), keyBody(key)),
		b.resetHWID(t, "not-a-session", keyBody(key)),
	}
	for _, a := range notFound {
		require.Equal(t, http.StatusNotFound, a.status)
		require.Equal(t, notFound[0].body, a.body)
	}
	require.Equal(t, "not_found", notFound[0].body["code"])
	require.Equal(t, stripeReads, len(b.Stripe.Requests()), "no Stripe lookup")

	// A revoked key is refused, and nothing is reserved or queued.
	b.refundOrder(t, s)
	b.waitKeys(t, s.ID, "revoked", "blacklisted")
	a := b.resetHWID(t, s.ID, keyBody(key))
	require.Equal(t, http.StatusConflict, a.status)
	require.Equal(t, "conflict", a.body["code"])
	require.Contains(t, a.body["error"], "revoked")
	require.Zero(t, b.Count(t, `SELECT count(*) FROM hwid_resets`))
	rivertest.RequireNotInserted(t.Context(), t, b.jobsDB(), jobs.ResetHWIDArgs{}, nil)
	require.Equal(t, "pc-old", b.user(t, key).Identifier)

	// The other order's key is untouched by all this and can be reset.
	require.Equal(t, http.StatusAccepted, b.resetHWID(t, other.ID, keyBody(otherKey)).status)
}

func TestHWIDResetRefusesMalformedBodiesAndLimitsEachClient(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, _ := b.boughtKey(t)
	for _, body := range []string{``, `[]`, `{"user_key":""}`, `{"user_key":1}`,
		`{"user_key":"` + strings.Repeat("k", 129) + `"}`} {
		a := b.resetHWID(t, s.ID, body)
		require.Equal(t, http.StatusBadRequest, a.status, body)
		require.Equal(t, "invalid", a.body["code"])
	}
	// Every request, whatever its answer, costs the client: five, then
	// the sixth is refused, so keys cannot be probed.
	a := b.resetHWID(t, s.ID, keyBody("guess"))
	require.Equal(t, http.StatusTooManyRequests, a.status)
	require.Equal(t, "rate_limited", a.body["code"])
	require.Equal(t, "10", a.retryAfter)
}

func TestHWIDResetJobRunTwiceRecordsOneReset(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, key := b.boughtKey(t)
	require.Equal(t, http.StatusAccepted, b.resetHWID(t, s.ID, keyBody(key)).status)
	first := b.waitReset(t, s.ID, key, "done")
	b.waitIdle(t)
	jobID := rivertest.RequireInserted(t.Context(), t, b.jobsDB(), jobs.ResetHWIDArgs{}, nil).ID

	// The same job again (a rescued job, an operator's retry): the reset
	// is recorded done, so nothing more happens.
	watch := fulfillertest.WatchJobs(t, b.Main.River)
	_, err := b.Main.River.JobRetry(context.Background(), jobID)
	require.NoError(t, err)
	again := waitJobEnded(t, watch, jobID, 2)
	require.Equal(t, river.EventKindJobCompleted, again.Kind)
	require.Equal(t, 2, again.Job.Attempt, "the job ran a second time")
	require.Equal(t, 1, b.Count(t, `SELECT resets FROM hwid_resets`))
	require.Equal(t, 1, b.user(t, key).TotalResets)
	require.Equal(t, first, b.waitReset(t, s.ID, key, "done"))
}

func TestHWIDResetWhoseAnswerWasLostIsRepeatedHarmlessly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, key := b.boughtKey(t)
	// Luarmor resets the key, then the answer is lost: the job cannot know
	// and resets again (forced, so Luarmor's own cooldown does not refuse).
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/resethwid", Kind: sandbox.FaultApplyThenDrop, Times: 1})
	require.Equal(t, http.StatusAccepted, b.resetHWID(t, s.ID, keyBody(key)).status)
	b.waitReset(t, s.ID, key, "done")
	require.Equal(t, 2, b.user(t, key).TotalResets, "Luarmor reset twice")
	require.Equal(t, 1, b.Count(t, `SELECT resets FROM hwid_resets`), "recorded once")
	b.resetJobsIn(t, 1, rivertype.JobStateCompleted)
}

func TestLuarmorRefusalFailsTheResetAndGivesTheCooldownBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, key := b.boughtKey(t)
	b.Luarmor.SetHWIDResetsEnabled(project, false)
	require.Equal(t, http.StatusAccepted, b.resetHWID(t, s.ID, keyBody(key)).status)
	r := b.waitReset(t, s.ID, key, "failed")
	require.Equal(t, "HWID resets are disabled for this product; contact the seller", r.Message)
	require.NotNil(t, r.NextResetAt, "a short pause, not the whole cooldown")
	require.LessOrEqual(t, time.Until(time.Unix(*r.NextResetAt, 0)), postgres.FailedResetPause)
	require.Nil(t, r.LastResetAt)
	b.waitIdle(t)
	b.resetJobsIn(t, 1, rivertype.JobStateCancelled) // a refusal that will not change is not retried
	require.Equal(t, "pc-old", b.user(t, key).Identifier)
	again := b.resetHWID(t, s.ID, keyBody(key))
	require.Equal(t, http.StatusTooManyRequests, again.status, "no Luarmor call per request while the refusal stands")
	require.Equal(t, 1, b.Luarmor.CallCount(http.MethodPost, "/resethwid"))

	// Once the seller turns resets on and the pause is over, the buyer
	// tries again.
	b.Luarmor.SetHWIDResetsEnabled(project, true)
	_, err := b.Pool.Exec(context.Background(), `UPDATE hwid_resets SET next_reset_at = now()`)
	require.NoError(t, err, "the pause passes")
	require.Equal(t, http.StatusAccepted, b.resetHWID(t, s.ID, keyBody(key)).status)
	r = b.waitReset(t, s.ID, key, "done")
	require.Empty(t, r.Message)
	require.NotNil(t, r.NextResetAt)
	require.Empty(t, b.user(t, key).Identifier)

	// A key banned in Luarmor behind the service's back: failed too, with
	// the reason, and Luarmor's HWID stays.
	s2, key2 := b.boughtKey(t)
	lua := b.Luarmor.Client()
	require.NoError(t, lua.Blacklist(context.Background(), project, luarmor.BlacklistRequest{UserKey: key2}))
	require.Equal(t, http.StatusAccepted, b.resetHWID(t, s2.ID, keyBody(key2)).status)
	r = b.waitReset(t, s2.ID, key2, "failed")
	require.Equal(t, "this key is banned and cannot be reset", r.Message)
	require.NotNil(t, r.NextResetAt)
	require.Equal(t, "pc-old", b.user(t, key2).Identifier)
}

func TestLuarmorRateLimitSnoozesTheResetUntilItSucceeds(t *testing.T) {
	t.Parallel()
	// A 429 waits out the budget's window: a short one keeps the test short.
	b := setup(t, withConfig(func(c *config.Config) { c.LuarmorRateWindow = time.Second }))
	s, key := b.boughtKey(t)
	b.Luarmor.InjectFault(sandbox.Fault{Method: http.MethodPost, PathContains: "/resethwid", Kind: sandbox.FaultRateLimit, Times: 1})
	require.Equal(t, http.StatusAccepted, b.resetHWID(t, s.ID, keyBody(key)).status)
	b.waitReset(t, s.ID, key, "done")
	require.Equal(t, 2, b.Luarmor.CallCount(http.MethodPost, "/users/resethwid"), "refused once, then sent again")
	require.Equal(t, 1, b.user(t, key).TotalResets)
	b.waitIdle(t)
	require.Empty(t, b.resetJobsIn(t, 1, rivertype.JobStateCompleted)[0].Errors, "a snooze is no failure")
}

func TestFullKeyIsNeverLoggedByHWIDResets(t *testing.T) {
	t.Parallel()
	var logs logtest.Buffer
	b := setup(t, withLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	s, key := b.boughtKey(t)
	require.Equal(t, http.StatusAccepted, b.resetHWID(t, s.ID, keyBody(key)).status)
	b.waitReset(t, s.ID, key, "done")
	require.Equal(t, http.StatusTooManyRequests, b.resetHWID(t, s.ID, keyBody(key)).status)

	s2, key2 := b.boughtKey(t)
	b.Luarmor.SetHWIDResetsEnabled(project, false)
	require.Equal(t, http.StatusAccepted, b.resetHWID(t, s2.ID, keyBody(key2)).status)
	b.waitReset(t, s2.ID, key2, "failed")
	b.waitIdle(t)

	out := logs.String()
	require.Contains(t, out, `"msg":"HWID reset"`)
	require.Contains(t, out, `"msg":"job failed for good and was cancelled"`)
	require.Contains(t, out, logging.MaskKey(key), "keys are named by their last four characters")
	require.NotContains(t, out, key[:6], "and not by their prefix")
	for _, secret := range []string{key, key2, s.ID, s2.ID} {
		require.NotContains(t, out, secret)
	}
}
