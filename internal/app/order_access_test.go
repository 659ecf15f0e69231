package app_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/fulfillertest"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/jobs"
	"fulfiller/internal/logging"
	"fulfiller/internal/mail/mailtest"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi/stripefake"
)

// orderLinkPattern is the order link of a keys email.
var orderLinkPattern = regexp.MustCompile(regexp.QuoteMeta(publicBase) + `/orders/(ol_[A-Za-z0-9_-]+)`)

// keysEmailLink is the signed order link of a keys email, read from both
// parts, which must agree; neither holds a Checkout Session ID.
func keysEmailLink(t *testing.T, msg mailtest.Message) (token string, e parsedEmail) {
	t.Helper()
	e = parseEmail(t, msg.Data)
	text := orderLinkPattern.FindStringSubmatch(e.text)
	require.NotNil(t, text, "the plain-text part links to the order: %s", e.text)
	html := orderLinkPattern.FindStringSubmatch(e.html)
	require.NotNil(t, html, "the HTML part links to the order: %s", e.html)
	require.Equal(t, text[1], html[1])
	require.NotContains(t, e.text+e.html, "cs_", "a Checkout Session ID cannot be revoked: it is never in an email")
	return text[1], e
}

// keysMessages waits until the SMTP server accepted n keys emails and
// returns them.
func (b *mailBundle) keysMessages(t *testing.T, n int) []mailtest.Message {
	t.Helper()
	return b.keysMessagesWithin(t, n, fulfillertest.WaitTimeout)
}

// keysMessagesWithin is keysMessages for a wait longer than the harness's:
// an email job that snoozes, each snooze ending an attempt.
func (b *mailBundle) keysMessagesWithin(t *testing.T, n int, within time.Duration) []mailtest.Message {
	t.Helper()
	var out []mailtest.Message
	sent := fulfillertest.JobsUntil(b.Main.River, within, func() bool {
		out = out[:0]
		for _, m := range b.smtp.Messages() {
			if strings.Contains(string(m.Data), "\r\nSubject: Your license keys\r\n") {
				out = append(out, m)
			}
		}
		return len(out) >= n
	})
	require.True(t, sent, "expected %d keys emails within %s, got %d", n, within, len(out))
	return out
}

// client returns a new client address each call, so the per-client
// limits stay out of tests that are not about them.
func newClient() string {
	n := clientSeq.Add(1)
	return fmt.Sprintf("198.19.%d.%d", n/250%250, n%250+1)
}

// rotateLink rotates an order's access through the admin API.
func (b *lookupBundle) rotateLink(t *testing.T, idOrRef string) httpapi.AdminRotatedJSON {
	t.Helper()
	a := b.adminCall(t, http.MethodPost, "/v1/admin/orders/"+idOrRef+"/rotate-link", `{"reason":"link posted on a forum"}`, adminToken)
	require.Equal(t, http.StatusOK, a.status, string(a.body))
	var out httpapi.AdminRotatedJSON
	a.decode(t, &out)
	return out
}

// stripeLookupsOf counts the Stripe requests that named id.
func (b *bundle) stripeLookupsOf(id string) int {
	n := 0
	for _, r := range b.Stripe.Requests() {
		if strings.Contains(r.Path, id) || strings.Contains(r.Query, id) {
			n++
		}
	}
	return n
}

// unknownAnswer is what the order API answers for an order it does not know.
func (b *bundle) unknownAnswer(t *testing.T, credential string) apiAnswer {
	t.Helper()
	a := b.call(t, http.MethodGet, "/v1/orders/"+credential, "", newClient(), "")
	require.Equal(t, http.StatusNotFound, a.status, string(a.body))
	return a
}

// anonymisedPage is a page's body with the credential it was opened with,
// and the reference derived from it, taken out: what is left must be the
// same for two credentials answered alike.
func anonymisedPage(body []byte, credential string) string {
	s := strings.ReplaceAll(string(body), logging.OrderRef(credential), "REF")
	return strings.ReplaceAll(s, credential, "CREDENTIAL")
}

func TestRotatedSessionIDIsAnsweredLikeAnUnknownOrderWithoutAskingStripe(t *testing.T) {
	t.Parallel()
	b := setupLookup(t)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	key := o.Keys[0].UserKey
	b.keysMessages(t, 1)

	unknown := fulfillertest.NewID("cs_test_")
	wantAPI := b.unknownAnswer(t, unknown)
	unknownPage := b.call(t, http.MethodGet, "/orders/"+unknown, "", newClient(), "")
	require.Equal(t, http.StatusOK, unknownPage.status, "an unknown session ID of a plausible shape waits like a paid order")
	unknownReset := b.call(t, http.MethodPost, "/v1/orders/"+unknown+"/reset-hwid", keyBody(key), newClient(), "")
	require.Equal(t, http.StatusNotFound, unknownReset.status)

	rot := b.rotateLink(t, s.ID)
	require.Equal(t, logging.OrderRef(s.ID), rot.OrderRef)
	require.EqualValues(t, 2, rot.AccessGeneration)
	require.Equal(t, 2, rot.EmailDelivery, "the fresh link goes out as the order's second keys email")
	require.Empty(t, rot.NoEmail)
	lookupsBefore := b.stripeLookupsOf(s.ID)

	api := b.call(t, http.MethodGet, "/v1/orders/"+s.ID, "", newClient(), "")
	require.Equal(t, wantAPI.status, api.status)
	require.Equal(t, string(wantAPI.body), string(api.body), "the same body as an unknown order")
	require.NotContains(t, string(api.body), key)
	api = b.call(t, http.MethodGet, "/v1/orders/"+s.ID+"?wait=1", "", newClient(), "")
	require.Equal(t, string(wantAPI.body), string(api.body), "a long poll is refused alike")

	page := b.call(t, http.MethodGet, "/orders/"+s.ID, "", newClient(), "")
	require.Equal(t, unknownPage.status, page.status)
	require.Equal(t, anonymisedPage(unknownPage.body, unknown), anonymisedPage(page.body, s.ID), "the page of an unknown session ID")
	require.NotContains(t, string(page.body), key)

	reset := b.call(t, http.MethodPost, "/v1/orders/"+s.ID+"/reset-hwid", keyBody(key), newClient(), "")
	require.Equal(t, unknownReset.status, reset.status)
	require.Equal(t, string(unknownReset.body), string(reset.body))
	require.Zero(t, b.Count(t, `SELECT count(*) FROM hwid_resets`), "no reset was recorded")

	require.Equal(t, lookupsBefore, b.stripeLookupsOf(s.ID), "Stripe is never asked about a revoked session ID")
	require.Positive(t, b.stripeLookupsOf(unknown), "while an unknown one is confirmed with Stripe")

	// Support still finds the order by the session ID it was sold under.
	status, details := b.admin(t, http.MethodGet, "/v1/admin/orders/"+s.ID, "", adminToken)
	require.Equal(t, http.StatusOK, status, details)
	require.NotContains(t, b.logs.String(), s.ID, "the session ID never goes into a log")
}

func TestRotationStopsOldLinksAndEmailsAFreshOne(t *testing.T) {
	t.Parallel()
	b := setupLookup(t)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	key := o.Keys[0].UserKey
	old, e := keysEmailLink(t, b.keysMessages(t, 1)[0])
	require.Contains(t, e.text, key)

	// The email's link opens the order, its page and its HWID reset, and
	// never tells its holder the session ID.
	a := b.call(t, http.MethodGet, "/v1/orders/"+old, "", newClient(), "")
	require.Equal(t, http.StatusOK, a.status, string(a.body))
	require.NotContains(t, string(a.body), "cs_")
	var seen httpapi.OrderJSON
	a.decode(t, &seen)
	require.Equal(t, key, seen.Keys[0].UserKey)
	page := b.call(t, http.MethodGet, "/orders/"+old, "", newClient(), "")
	require.Equal(t, http.StatusOK, page.status)
	require.Contains(t, string(page.body), key)
	require.NotContains(t, string(page.body), s.ID)

	forged := b.unknownAnswer(t, "ol_"+strings.Repeat("A", len(old)-3))
	forgedPage := b.call(t, http.MethodGet, "/orders/ol_"+strings.Repeat("A", len(old)-3), "", newClient(), "")
	require.Equal(t, http.StatusNotFound, forgedPage.status)

	rot := b.rotateLink(t, logging.OrderRef(s.ID))
	require.Equal(t, 2, rot.EmailDelivery)
	fresh, e2 := keysEmailLink(t, b.keysMessages(t, 2)[1])
	require.NotEqual(t, old, fresh)
	require.Contains(t, e2.text, key)

	a = b.call(t, http.MethodGet, "/v1/orders/"+old, "", newClient(), "")
	require.Equal(t, http.StatusNotFound, a.status)
	require.Equal(t, string(forged.body), string(a.body), "an old link is answered as a forged one")
	page = b.call(t, http.MethodGet, "/orders/"+old, "", newClient(), "")
	require.Equal(t, forgedPage.status, page.status)
	require.Equal(t, string(forgedPage.body), string(page.body))
	reset := b.call(t, http.MethodPost, "/v1/orders/"+old+"/reset-hwid", keyBody(key), newClient(), "")
	require.Equal(t, http.StatusNotFound, reset.status, string(reset.body))

	a = b.call(t, http.MethodGet, "/v1/orders/"+fresh, "", newClient(), "")
	require.Equal(t, http.StatusOK, a.status, string(a.body))
	a.decode(t, &seen)
	require.Equal(t, key, seen.Keys[0].UserKey)
	require.Empty(t, seen.CheckoutSessionID)
	page = b.call(t, http.MethodGet, "/orders/"+fresh, "", newClient(), "")
	require.Equal(t, http.StatusOK, page.status)
	require.Contains(t, string(page.body), key)
	reset = b.call(t, http.MethodPost, "/v1/orders/"+fresh+"/reset-hwid", keyBody(key), newClient(), "")
	require.Equal(t, http.StatusAccepted, reset.status, string(reset.body))

	logs := b.logs.String()
	require.Contains(t, logs, "order access rotated")
	for _, secret := range []string{old, fresh, s.ID, key} {
		require.NotContains(t, logs, secret, "no credential goes into a log")
	}
	emails := rivertest.RequireManyInserted(t.Context(), t, b.jobsDB(), []rivertest.ExpectedJob{
		{Args: jobs.SendOrderEmailArgs{}}, {Args: jobs.SendOrderEmailArgs{}}, // the purchase's and the rotation's
	})
	for _, job := range emails {
		require.NotContains(t, string(job.EncodedArgs), "ol_", "a job's arguments never carry a link")
	}
}

func TestExpiredTamperedAndForgedOrderLinksAreAnsweredLikeAnUnknownOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, withConfig(func(c *config.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}))
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	ctx := context.Background()
	recorded, err := postgres.GetOrder(ctx, b.Pool, s.ID)
	require.NoError(t, err)
	links, err := jobs.LoadOrderLinks(ctx, b.Pool)
	require.NoError(t, err)
	now := time.Now()

	valid := links.Sign(recorded, now.Add(time.Hour))
	a := b.call(t, http.MethodGet, "/v1/orders/"+valid, "", newClient(), "")
	require.Equal(t, http.StatusOK, a.status, "a link this service signed opens the order")
	require.Contains(t, string(a.body), o.Keys[0].UserKey)

	unknown := b.unknownAnswer(t, fulfillertest.NewID("cs_test_"))
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(valid, jobs.OrderLinkPrefix))
	require.NoError(t, err)
	otherOrder := append([]byte(nil), raw...)
	otherOrder[7]++ // the next order number, MAC unchanged
	otherMAC := append([]byte(nil), raw...)
	otherMAC[len(otherMAC)-1] ^= 1
	nextGeneration := *recorded
	nextGeneration.AccessGeneration++
	otherID := *recorded
	otherID.ID += 1000

	for name, token := range map[string]string{
		"expired":                      links.Sign(recorded, now.Add(-time.Second)),
		"valid far longer than issued": links.Sign(recorded, now.Add(jobs.OrderEmailLinkTTL+48*time.Hour)),
		"another order number":         jobs.OrderLinkPrefix + base64.RawURLEncoding.EncodeToString(otherOrder),
		"a changed MAC":                jobs.OrderLinkPrefix + base64.RawURLEncoding.EncodeToString(otherMAC),
		"a generation not reached":     links.Sign(&nextGeneration, now.Add(time.Hour)),
		"an order number not used":     links.Sign(&otherID, now.Add(time.Hour)),
		"truncated":                    valid[:len(valid)-1],
		"one character more":           valid + "A",
		"not base64":                   jobs.OrderLinkPrefix + strings.Repeat("*", len(valid)-3),
		"the prefix alone":             jobs.OrderLinkPrefix,
	} {
		a := b.call(t, http.MethodGet, "/v1/orders/"+token, "", newClient(), "")
		require.Equal(t, http.StatusNotFound, a.status, name)
		require.Equal(t, string(unknown.body), string(a.body), name)
		page := b.call(t, http.MethodGet, "/orders/"+token, "", newClient(), "")
		require.Equal(t, http.StatusNotFound, page.status, name)
		require.NotContains(t, string(page.body), o.Keys[0].UserKey, name)
		reset := b.call(t, http.MethodPost, "/v1/orders/"+token+"/reset-hwid", keyBody(o.Keys[0].UserKey), newClient(), "")
		require.Equal(t, http.StatusNotFound, reset.status, name)
	}
	require.Zero(t, b.Count(t, `SELECT count(*) FROM hwid_resets`))
}

func TestMyKeysHandsOutShortLivedLinksNeverSessionIDs(t *testing.T) {
	t.Parallel()
	b := setupLookup(t)
	first := b.buyAs(t, "links@example.com", fulfillertest.NewID("cus_"), stripefake.Item{PriceID: priceMonth, Quantity: 1})
	second := b.buyAs(t, "links@example.com", fulfillertest.NewID("cus_"), stripefake.Item{PriceID: priceLife, Quantity: 1})
	require.Equal(t, http.StatusAccepted, b.keyLookup(t, "links@example.com", "").status)
	token := linkToken(t, b.waitLookupMessages(t, 1)[0])

	before := time.Now()
	got := b.myKeys(t, token)
	require.Equal(t, http.StatusOK, got.status, string(got.body))
	require.NotContains(t, string(got.body), "cs_", "no Checkout Session ID anywhere in the answer")
	var listing httpapi.MyKeysJSON
	got.decode(t, &listing)
	require.Len(t, listing.Orders, 2)
	for i, want := range []httpapi.OrderJSON{second, first} {
		listed := listing.Orders[i]
		require.Equal(t, logging.OrderRef(want.CheckoutSessionID), listed.OrderRef)
		require.True(t, strings.HasPrefix(listed.LinkToken, jobs.OrderLinkPrefix))
		require.InDelta(t, before.Add(jobs.OrderLookupLinkTTL).Unix(), listed.LinkExpiresAt, 60)
		require.Equal(t, want.Keys[0].UserKey, listed.Keys[0].UserKey)

		a := b.call(t, http.MethodGet, "/v1/orders/"+listed.LinkToken, "", newClient(), "")
		require.Equal(t, http.StatusOK, a.status, string(a.body))
		require.NotContains(t, string(a.body), "cs_")
		page := b.call(t, http.MethodGet, "/orders/"+listed.LinkToken, "", newClient(), "")
		require.Equal(t, http.StatusOK, page.status)
		require.Contains(t, string(page.body), want.Keys[0].UserKey)
		require.Contains(t, string(page.body), `data-order-id="`+listed.LinkToken+`"`, "the page's script asks with the link it was opened with")
	}

	// A rotation stops the links find my keys handed out; asking again
	// hands out working ones.
	b.rotateLink(t, first.CheckoutSessionID)
	require.Equal(t, http.StatusNotFound, b.call(t, http.MethodGet, "/v1/orders/"+listing.Orders[1].LinkToken, "", newClient(), "").status)
	require.Equal(t, http.StatusOK, b.call(t, http.MethodGet, "/v1/orders/"+listing.Orders[0].LinkToken, "", newClient(), "").status,
		"the other order's link is untouched")
	got = b.myKeys(t, token)
	require.Equal(t, http.StatusOK, got.status)
	got.decode(t, &listing)
	require.Equal(t, http.StatusOK, b.call(t, http.MethodGet, "/v1/orders/"+listing.Orders[1].LinkToken, "", newClient(), "").status)
}

func TestReissueWithRotationLeavesTheOldLinkDeadAndEmailsTheNewKeyOnAFreshOne(t *testing.T) {
	t.Parallel()
	b := setupLookup(t)
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	oldKey := o.Keys[0].UserKey
	oldLink, _ := keysEmailLink(t, b.keysMessages(t, 1)[0])

	status, out := b.admin(t, http.MethodPost, "/v1/admin/keys/reissue", `{"user_key":"`+oldKey+`","rotate_link":true}`, adminToken)
	require.Equal(t, http.StatusAccepted, status, out)
	require.Equal(t, true, out["link_rotated"])
	// Revoked in the step that accepted the reissue, before any key is made.
	require.Equal(t, http.StatusNotFound, b.call(t, http.MethodGet, "/v1/orders/"+s.ID, "", newClient(), "").status)
	require.Equal(t, http.StatusNotFound, b.call(t, http.MethodGet, "/v1/orders/"+oldLink, "", newClient(), "").status)
	require.Equal(t, rivertype.JobStateCompleted, b.waitJob(t, int64(out["job_id"].(float64))))

	// The old key's support ban leaves its ledger version ahead of the
	// version applied (no writer is queued for a ban support applied
	// itself), so the keys email waits out keysEmailWaitsForWriters
	// (2 minutes) before it goes out.
	freshLink, e := keysEmailLink(t, b.keysMessagesWithin(t, 2, 3*time.Minute)[1])
	require.NotEqual(t, oldLink, freshLink)
	require.NotContains(t, e.text+e.html, oldKey, "the revoked key is not sent again")
	a := b.call(t, http.MethodGet, "/v1/orders/"+freshLink, "", newClient(), "")
	require.Equal(t, http.StatusOK, a.status, string(a.body))
	var seen httpapi.OrderJSON
	a.decode(t, &seen)
	require.Equal(t, "fulfilled", seen.Status)
	var newKey string
	for _, k := range seen.Keys {
		if k.Status == string(order.KeyActive) {
			newKey = k.UserKey
		}
	}
	require.NotEmpty(t, newKey)
	require.NotEqual(t, oldKey, newKey)
	require.Contains(t, e.text, newKey, "the new key reaches the buyer by the fresh link's email")
	page := b.call(t, http.MethodGet, "/orders/"+freshLink, "", newClient(), "")
	require.Contains(t, string(page.body), newKey)

	require.Equal(t, http.StatusNotFound, b.call(t, http.MethodGet, "/v1/orders/"+oldLink, "", newClient(), "").status)
	require.Equal(t, http.StatusNotFound, b.call(t, http.MethodGet, "/v1/orders/"+s.ID, "", newClient(), "").status)

	// The owed email is queued once, however often the reissue's job runs.
	_, err := b.Main.River.JobRetry(context.Background(), int64(out["job_id"].(float64)))
	require.NoError(t, err)
	require.Equal(t, rivertype.JobStateCompleted, b.waitJob(t, int64(out["job_id"].(float64))))
	require.Equal(t, 2, b.Count(t, `SELECT count(*) FROM order_emails WHERE order_id = (SELECT id FROM orders WHERE checkout_session_id = $1)`, s.ID))
}

func TestRotateLinkIsOnlyForReissuesAndNeedsAKnownOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	status, out := b.admin(t, http.MethodPost, "/v1/admin/keys/blacklist", `{"user_key":"`+o.Keys[0].UserKey+`","rotate_link":true}`, adminToken)
	require.Equal(t, http.StatusBadRequest, status, out)

	a := b.adminCall(t, http.MethodPost, "/v1/admin/orders/ord_000000000000/rotate-link", "", adminToken)
	require.Equal(t, http.StatusNotFound, a.status, string(a.body))
	a = b.adminCall(t, http.MethodPost, "/v1/admin/orders/nonsense/rotate-link", "", adminToken)
	require.Equal(t, http.StatusBadRequest, a.status, string(a.body))
	a = b.adminCall(t, http.MethodPost, "/v1/admin/orders/"+o.CheckoutSessionID+"/rotate-link", `{"reason":"two\nlines"}`, adminToken)
	require.Equal(t, http.StatusBadRequest, a.status, string(a.body))
	a = b.adminCall(t, http.MethodPost, "/v1/admin/orders/"+o.CheckoutSessionID+"/rotate-link", "", "")
	require.Equal(t, http.StatusUnauthorized, a.status, string(a.body))

	// Without mail, the rotation holds and says no email brings a link.
	a = b.adminCall(t, http.MethodPost, "/v1/admin/orders/"+o.CheckoutSessionID+"/rotate-link", "", adminToken)
	require.Equal(t, http.StatusOK, a.status, string(a.body))
	var rot httpapi.AdminRotatedJSON
	require.NoError(t, json.Unmarshal(a.body, &rot))
	require.Zero(t, rot.EmailDelivery)
	require.Contains(t, rot.NoEmail, "mail is off")
	code, _ := b.GetOrder(t, o.CheckoutSessionID)
	require.Equal(t, http.StatusNotFound, code)
}
