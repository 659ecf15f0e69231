package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/entitlement"
	"fulfiller/internal/order"
)

// A Discord account a buyer verified from the order page (see
// order.VerifiedDiscord). The order's row in order_discord says which
// account; the key's writer links it to the key each verification names,
// once, and records what it did on the key's ledger row.

// discordUnit is true of an order_keys row k that is its order's Discord
// unit in its project: the first unit of the project still pending or
// active. A revoked or replaced unit hands the account on to the next.
const discordUnit = `k.id = (SELECT min(u.id) FROM order_keys u
	WHERE u.checkout_session_id = k.checkout_session_id AND u.project_id = k.project_id
	  AND u.status IN ('pending', 'active'))`

// newerVerification is true when an order other than d's verified the
// same account later and has a unit in k's project: that order holds the
// account in the project, as Luarmor links one key per project.
const newerVerification = `EXISTS (SELECT 1 FROM order_discord n JOIN orders no ON no.id = n.order_id
	WHERE n.discord_id = d.discord_id AND n.verification > d.verification
	  AND EXISTS (SELECT 1 FROM order_keys nu WHERE nu.checkout_session_id = no.checkout_session_id
	              AND nu.project_id = k.project_id AND nu.status IN ('pending', 'active')))`

// DesiredDiscord is the verified account the Luarmor key userKey of a
// project is to carry (rule 9 of internal/entitlement): the account of the
// newest verification among the orders whose Discord unit holds the key,
// unless a newer verification of that account holds the project. The zero
// value when none.
func DesiredDiscord(ctx context.Context, db DB, projectID, userKey string) (entitlement.Discord, error) {
	var want entitlement.Discord
	err := db.QueryRow(ctx, `SELECT d.discord_id, d.verification FROM order_keys k
		JOIN orders o ON o.checkout_session_id = k.checkout_session_id
		JOIN order_discord d ON d.order_id = o.id
		WHERE k.project_id = $1 AND k.user_key = $2 AND k.status = 'active' AND `+discordUnit+`
		  AND NOT `+newerVerification+`
		ORDER BY d.verification DESC LIMIT 1`, projectID, userKey).Scan(&want.ID, &want.Verification)
	if errors.Is(err, pgx.ErrNoRows) {
		return entitlement.Discord{}, nil
	}
	if err != nil {
		return entitlement.Discord{}, fmt.Errorf("reading the verified Discord account of a key: %w", err)
	}
	return want, nil
}

// VerifyDiscord records, in tx, the Discord account the buyer of order
// orderID verified (replacing an earlier one, with a new verification
// number), and returns the ledger keys of the order's delivered Discord
// units, whose versions it moved on: queue their writers in tx. Units not
// delivered yet get the account when their writer runs after delivery.
func VerifyDiscord(ctx context.Context, tx pgx.Tx, orderID int64, discordID, username string) ([]int64, error) {
	if _, err := tx.Exec(ctx, `
		INSERT INTO order_discord (order_id, discord_id, username) VALUES ($1, $2, $3)
		ON CONFLICT (order_id) DO UPDATE SET discord_id = EXCLUDED.discord_id, username = EXCLUDED.username,
			verification = nextval('order_discord_verification_seq'), verified_at = now()`,
		orderID, discordID, username); err != nil {
		return nil, fmt.Errorf("recording the Discord account verified for order number %d: %w", orderID, err)
	}
	rows, err := tx.Query(ctx, `UPDATE ledger_keys l SET version = l.version + 1, updated_at = now()
		FROM order_keys k JOIN orders o ON o.checkout_session_id = k.checkout_session_id
		WHERE o.id = $1 AND k.status = 'active' AND `+discordUnit+`
		  AND l.project_id = k.project_id AND l.user_key = k.user_key
		RETURNING l.id`, orderID)
	if err != nil {
		return nil, fmt.Errorf("queueing the Discord link of order number %d: %w", orderID, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("queueing the Discord link of order number %d: %w", orderID, err)
	}
	return ids, nil
}

// UseDiscordState records that the sign-in whose state was made from
// nonce came back, and reports whether it is the first time: a replayed
// callback is refused before Discord is asked. Records older than a day,
// long past any state's expiry, are dropped on the way.
func UseDiscordState(ctx context.Context, db DB, nonce string) (bool, error) {
	if _, err := db.Exec(ctx, `DELETE FROM discord_oauth_states WHERE used_at < now() - interval '1 day'`); err != nil {
		return false, fmt.Errorf("dropping old Discord sign-ins: %w", err)
	}
	tag, err := db.Exec(ctx, `INSERT INTO discord_oauth_states (nonce) VALUES ($1) ON CONFLICT (nonce) DO NOTHING`, nonce)
	if err != nil {
		return false, fmt.Errorf("recording a Discord sign-in: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// RecordDiscordApplied records, in the writer's completing transaction,
// what it did with verification: the account it linked (discordID), or
// why Luarmor refused it (refused, "in_use" or "invalid", with discordID
// "").
func RecordDiscordApplied(ctx context.Context, tx pgx.Tx, ledgerID, verification int64, discordID, refused string) error {
	_, err := tx.Exec(ctx, `UPDATE ledger_keys SET applied_discord_verification = $2, applied_discord_id = $3,
			applied_discord_refused = $4, updated_at = now()
		WHERE id = $1`, ledgerID, verification, discordID, refused)
	if err != nil {
		return fmt.Errorf("recording the Discord link of ledger key %d: %w", ledgerID, err)
	}
	// The order pages showing the link are woken, as by a delivery.
	if _, err := tx.Exec(ctx, `SELECT pg_notify('order_changed', k.checkout_session_id) FROM order_keys k
		JOIN ledger_keys l ON l.project_id = k.project_id AND l.user_key = k.user_key
		WHERE l.id = $1`, ledgerID); err != nil {
		return fmt.Errorf("announcing the Discord link of ledger key %d: %w", ledgerID, err)
	}
	return nil
}

// DiscordHolderMovable reports whether a verified account discordID may
// be taken from the Luarmor key userKey of a project, which holds it, for
// the key a newer verification links it to, and returns that key's ledger
// ID: the service manages the key, no verification wants the account on
// it any more, and the key holds it because a Discord ID typed at checkout
// put it there (a unit of an order that typed it was delivered with it) or
// an older verification did. A link made any other way (by support, in
// the dashboard, through Luarmor's bot, on a key this service did not
// make) is never taken.
func DiscordHolderMovable(ctx context.Context, db DB, projectID, userKey, discordID string) (int64, bool, error) {
	var id int64
	var applied string
	err := db.QueryRow(ctx, `SELECT id, applied_discord_id FROM ledger_keys WHERE project_id = $1 AND user_key = $2`,
		projectID, userKey).Scan(&id, &applied)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("reading the ledger of the key holding a Discord account: %w", err)
	}
	wanted, err := DesiredDiscord(ctx, db, projectID, userKey)
	if err != nil || wanted.ID == discordID {
		return id, false, err
	}
	if applied == discordID {
		return id, true, nil
	}
	var typed bool
	err = db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM order_keys k
		JOIN orders o ON o.checkout_session_id = k.checkout_session_id
		WHERE k.project_id = $1 AND k.user_key = $2 AND k.discord_link = 'linked' AND o.discord_id = $3)`,
		projectID, userKey, discordID).Scan(&typed)
	if err != nil {
		return id, false, fmt.Errorf("reading how a key got its Discord link: %w", err)
	}
	return id, typed, nil
}

// ForgetDiscordLink records that the key of ledger key id no longer
// carries the Discord account it held by a typed ID or an older
// verification: a newer verification took it. Its units that showed the
// link show the account in use elsewhere, and their orders' pages are
// woken.
func ForgetDiscordLink(ctx context.Context, db DB, id int64) error {
	_, err := db.Exec(ctx, `WITH l AS (
			UPDATE ledger_keys SET applied_discord_id = '', updated_at = now() WHERE id = $1
			RETURNING project_id, user_key
		), k AS (
			UPDATE order_keys k SET discord_link = 'in_use', updated_at = now() FROM l
			WHERE k.project_id = l.project_id AND k.user_key = l.user_key AND k.discord_link = 'linked'
			RETURNING k.checkout_session_id
		)
		SELECT pg_notify('order_changed', checkout_session_id) FROM k`, id)
	if err != nil {
		return fmt.Errorf("recording the Discord link of ledger key %d moved: %w", id, err)
	}
	return nil
}

// verifiedDiscordSQL reads the Discord account verified for the order of
// Checkout Session $1 (readVerifiedDiscord).
const verifiedDiscordSQL = `SELECT d.discord_id, d.username, d.verification, d.verified_at
	FROM order_discord d JOIN orders o ON o.id = d.order_id WHERE o.checkout_session_id = $1`

// readVerifiedDiscord reads the account of verifiedDiscordSQL; nil when
// the order has none.
func readVerifiedDiscord(row pgx.Row, sessionID string) (*order.VerifiedDiscord, error) {
	var v order.VerifiedDiscord
	err := row.Scan(&v.ID, &v.Username, &v.Verification, &v.VerifiedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the Discord account verified for order %s: %w", sessionID, err)
	}
	return &v, nil
}

// attachDiscord records in o the Discord account v verified for it, if
// any (readVerifiedDiscord), what became of it on the order's keys
// (order.VerifiedDiscord.Status), and marks the keys that carry it.
func attachDiscord(ctx context.Context, db DB, o *order.Order, verified *order.VerifiedDiscord) error {
	if verified == nil {
		return nil
	}
	v := *verified
	rows, err := db.Query(ctx, `SELECT k.id, k.user_key IS NOT NULL, COALESCE(l.applied_discord_verification, 0),
			COALESCE(l.applied_discord_id, ''), COALESCE(l.applied_discord_refused, ''), `+newerVerification+`
		FROM order_keys k JOIN order_discord d ON d.order_id = $2
		LEFT JOIN ledger_keys l ON l.project_id = k.project_id AND l.user_key = k.user_key
		WHERE k.checkout_session_id = $1 AND `+discordUnit, o.CheckoutSessionID, o.ID)
	if err != nil {
		return fmt.Errorf("reading the Discord links of order number %d: %w", o.ID, err)
	}
	type unit struct {
		id               int64
		delivered, newer bool
		verification     int64
		linked, refused  string
	}
	units, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (unit, error) {
		var u unit
		err := row.Scan(&u.id, &u.delivered, &u.verification, &u.linked, &u.refused, &u.newer)
		return u, err
	})
	if err != nil {
		return fmt.Errorf("reading the Discord links of order number %d: %w", o.ID, err)
	}
	linking, inUse, invalid, linked := false, false, false, false
	carries := map[int64]bool{}
	for _, u := range units {
		switch {
		case u.newer:
			inUse = true
		case !u.delivered || u.verification != v.Verification:
			linking = true
		case u.refused == "invalid":
			invalid = true
		case u.linked == v.ID:
			linked = true
			carries[u.id] = true
		default:
			inUse = true
		}
	}
	switch {
	case linking:
		v.Status = order.DiscordLinking
	case invalid:
		v.Status = order.DiscordVerifiedInvalid
	case inUse:
		v.Status = order.DiscordVerifiedInUse
	case linked:
		v.Status = order.DiscordVerifiedLinked
	default:
		v.Status = order.DiscordNoKeys
	}
	for i := range o.Keys {
		o.Keys[i].DiscordVerified = carries[o.Keys[i].ID]
	}
	o.Discord = &v
	return nil
}
