package app_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/stripeapi/stripefake"
)

// submitKeyAction takes action on the key of unit from the console's
// order page: chosen in the unit's form, with discordID for set-discord;
// it returns the notice of its outcome.
func (p *page) submitKeyAction(t *testing.T, unit int64, action, reason, discordID string) string {
	t.Helper()
	id := strconv.FormatInt(unit, 10)
	p.openConsoleAction(t, "key-"+id)
	p.run(t, chromedp.SetValue(chromedp.CSS("#action-"+id), action))
	if discordID != "" {
		p.run(t, chromedp.SetValue(chromedp.CSS("#discord-"+id), discordID))
	}
	return p.confirmConsoleAction(t, action, "key-"+id, reason)
}

// luarmorUser waits until Luarmor holds the key in the state ok accepts.
func (b *bundle) luarmorUser(t *testing.T, key, what string, ok func(luarmor.User) bool) luarmor.User {
	t.Helper()
	var u luarmor.User
	b.WaitJobsUntil(t, what, func() bool {
		var found bool
		u, found = b.Luarmor.User(project, key)
		return found && ok(u)
	})
	return u
}

// TestConsoleOrderAndKeyActionsTakeEffect: from one order's console page,
// support resends the keys email, rotates the order link, sets the key's
// Discord ID, bans and unbans the key and reissues it, each confirmed with
// a reason. Each shows on the page, does what it says (the email arrives,
// the old link is refused and the new one opens the order, Luarmor holds
// the Discord ID, the unban, the new key) and is in the audit log with its
// reason.
func TestConsoleOrderAndKeyActionsTakeEffect(t *testing.T) {
	t.Parallel()
	b := setupLookup(t, withAdminLogin())
	s, o := b.buy(t, stripefake.Item{PriceID: priceMonth, Quantity: 1})
	key := o.Keys[0].UserKey
	oldLink, _ := keysEmailLink(t, b.keysMessages(t, 1)[0])
	ref := logging.OrderRef(s.ID)

	p := consolePage(t, b.bundle)
	p.open(t, "/console/orders/"+ref)
	unit := int64(eval[float64](t, p, `Number(document.querySelector(".unit").dataset.unit)`))

	require.Contains(t, p.submitConsoleAction(t, "resend-email", "resend-email", "the buyer lost the email"), "A new keys email is queued")
	resent, e := keysEmailLink(t, b.keysMessages(t, 2)[1])
	require.Contains(t, e.text, key, "the email carries the key")
	for _, link := range []string{oldLink, resent} {
		require.Equal(t, http.StatusOK, b.call(t, http.MethodGet, "/v1/orders/"+link, "", newClient(), "").status,
			"a resend rotates nothing: both emails' links open the order")
	}
	b.requireAudited(t, "resend-email", "the buyer lost the email")
	p.screenshots(t, "console-order-email-resent")

	require.Contains(t, p.submitConsoleAction(t, "rotate-link", "rotate-link", "the link was posted on a forum"), "no longer open it")
	fresh, _ := keysEmailLink(t, b.keysMessages(t, 3)[2])
	require.NotEqual(t, oldLink, fresh)
	require.Equal(t, http.StatusNotFound, b.call(t, http.MethodGet, "/orders/"+oldLink, "", newClient(), "").status, "the old link is refused")
	opened := b.call(t, http.MethodGet, "/v1/orders/"+fresh, "", newClient(), "")
	require.Equal(t, http.StatusOK, opened.status, "the new link opens the order")
	var seen httpapi.OrderJSON
	opened.decode(t, &seen)
	require.Equal(t, key, seen.Keys[0].UserKey)
	b.requireAudited(t, "rotate-link", "the link was posted on a forum")
	p.screenshots(t, "console-order-link-rotated")

	const discordID = "123456789012345678"
	require.Contains(t, p.submitKeyAction(t, unit, "set-discord", "the buyer changed Discord accounts", discordID), "Discord ID is queued")
	b.luarmorUser(t, key, "the Discord ID set in Luarmor", func(u luarmor.User) bool { return u.DiscordID == discordID })
	b.requireAudited(t, "set-discord", "the buyer changed Discord accounts")
	p.open(t, "/console/orders/"+ref)
	require.Contains(t, p.text(t, "ol.timeline"), "Luarmor PATCH /v3/projects/{project_id}/users: HTTP 200", "the Discord ID written to the key")
	p.screenshots(t, "console-order-discord-set")

	p.submitKeyAction(t, unit, "blacklist", "shared the key in a public channel", "")
	b.luarmorUser(t, key, "the key banned in Luarmor", func(u luarmor.User) bool { return u.Banned == 1 })
	require.Contains(t, p.submitKeyAction(t, unit, "unban", "the buyer took the post down", ""), "unban is queued")
	b.luarmorUser(t, key, "the key unbanned in Luarmor", func(u luarmor.User) bool { return u.Banned == 0 })
	b.requireAudited(t, "unban", "the buyer took the post down")
	// The order's Checkout Session ID no longer opens it (the link was
	// rotated): the key's record is read from the database.
	b.WaitJobsUntil(t, "the key recorded active", func() bool { return b.keyStatus(t, key) == "active" })
	p.open(t, "/console/orders/"+ref)
	require.Equal(t, "active", p.text(t, "#order-state"))
	require.Contains(t, p.text(t, "ol.timeline"), "Luarmor GET /v3/projects/{project_id}/users/unban: HTTP 200")
	p.screenshots(t, "console-order-key-unbanned")

	require.Contains(t, p.submitKeyAction(t, unit, "reissue", "the key leaked", ""), "reissue is queued")
	b.requireAudited(t, "reissue", "the key leaked")
	var newKey string
	b.WaitJobsUntil(t, "the reissued key delivered", func() bool {
		err := b.Pool.QueryRow(context.Background(), `SELECT user_key FROM order_keys
			WHERE checkout_session_id = $1 AND status = 'active' AND user_key <> $2`, s.ID, key).Scan(&newKey)
		return err == nil
	})
	made := b.luarmorUser(t, newKey, "the new key in Luarmor", func(luarmor.User) bool { return true })
	require.Equal(t, discordID, b.luarmorUser(t, newKey, "the Discord ID moved to the new key",
		func(u luarmor.User) bool { return u.DiscordID != "" }).DiscordID, "key %s", logging.MaskKey(made.UserKey))
	p.open(t, "/console/orders/"+ref)
	keys := eval[[]string](t, p, `[...document.querySelectorAll(".unit .key code")].map(e => e.textContent)`)
	require.Contains(t, keys, logging.MaskKey(newKey), "the new key on the page")
	p.screenshots(t, "console-order-key-reissued")
}

// TestConsoleDeletesTheStockOfAPriceNoLongerStocked: once the catalog no
// longer stocks a price, the stock page offers to delete its unsold keys;
// confirmed with a reason, they are deleted from Luarmor and the page no
// longer counts them, and the audit log keeps the reason.
func TestConsoleDeletesTheStockOfAPriceNoLongerStocked(t *testing.T) {
	t.Parallel()
	b := setupStock(t, 2, withAdminLogin())
	unsold := b.readyStock(t)
	require.Len(t, unsold, 2)
	// The catalog the service restarted with: the price is sold, not stocked.
	b.Catalog.Put(priceStocked, catalog.Product{ProjectID: project, KeyDays: 7})

	p := consolePage(t, b)
	p.open(t, "/console/stock")
	row := `tr[data-price="` + priceStocked + `"]`
	require.Contains(t, p.text(t, row), "orphan keys")
	p.screenshots(t, "console-stock-orphan")

	require.Contains(t, p.submitConsoleAction(t, "delete", "delete-"+priceStocked, "the price left the shop"),
		"deletion of the price's unsold keys is queued")
	p.waitFor(t, `document.querySelector('`+row+`') === null || document.querySelector('`+row+`').dataset.ready === "0"`,
		"the unsold keys gone from the page")
	p.waitFor(t, `!document.querySelector("#stock-live").hasAttribute("data-running")`, "the deletion to finish on the page")
	for k := range unsold {
		_, found := b.Luarmor.User(project, k)
		require.False(t, found, "key %s deleted from Luarmor", logging.MaskKey(k))
	}
	require.Empty(t, b.readyStock(t))
	require.Equal(t, priceStocked, b.requireAudited(t, "stock-delete", "the price left the shop").Detail["price_id"])
	p.screenshots(t, "console-stock-deleted")
}
