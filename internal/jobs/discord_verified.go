package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"fulfiller/internal/budget"
	"fulfiller/internal/entitlement"
	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// A Discord account the buyer verified from the order page (Discord's
// OAuth2; see order.VerifiedDiscord). The callback records it and, in the
// same transaction, queues the writers of the order's keys (VerifyDiscord);
// each key's writer (SyncKeyWorker) links it with Luarmor's linkdiscord,
// under the key's lease and through the budget, once per verification.

// discordOutcome is what a writer did with a verified Discord account.
type discordOutcome struct {
	Verification int64
	// Linked is the account the key now carries; "" when refused.
	Linked string
	// Refused is why Luarmor refused it: "in_use" or "invalid".
	Refused string
}

// Refusals of a verified account, as ledger_keys records them.
const (
	discordRefusedInUse   = "in_use"
	discordRefusedInvalid = "invalid"
)

// linkDiscord links the verified account want to the key, which Luarmor
// has as u. The verified account overrides whatever the key holds (the
// typed ID, an earlier verification): the buyer proved it. Luarmor links
// an account to one key per project: when another key holds it, that key
// gives it up if it got it from a typed ID or an older verification (see
// postgres.DiscordHolderMovable), under its own lease; any other holder
// keeps it and the refusal is recorded (in_use). A repeat after a lost
// answer finds the key linked and sends nothing.
func (w *SyncKeyWorker) linkDiscord(ctx context.Context, l *postgres.Ledger, want entitlement.Discord, u *luarmor.User, owner string, lease time.Duration) (*discordOutcome, error) {
	done := &discordOutcome{Verification: want.Verification, Linked: want.ID}
	refused := func(why string) *discordOutcome {
		return &discordOutcome{Verification: want.Verification, Refused: why}
	}
	log := w.Logger.With("ledger_key_id", l.ID, "user_key", logging.MaskKey(l.UserKey), "discord_id", want.ID)
	holding := u.DiscordID
	force := holding != "" // the verified account replaces what the key holds
	for attempt := 0; ; attempt++ {
		if holding == want.ID {
			return done, nil
		}
		err := w.Luarmor.LinkDiscord(ctx, l.ProjectID, luarmor.LinkDiscordRequest{UserKey: l.UserKey, DiscordID: want.ID, Force: force})
		switch {
		case err == nil:
			log.InfoContext(ctx, "verified Discord account linked to the key", "replaced", force)
			return done, nil
		case attempt >= 2:
			// Each turn below changed what stood in the way; one that
			// keeps changing is left to the job's retry.
			return nil, fmt.Errorf("linking the verified Discord account kept being refused: %w", err)
		case errors.Is(err, luarmor.ErrAlreadyLinked):
			// Linked since it was read (without force): read it again.
			now, gerr := w.Luarmor.GetUser(ctx, l.ProjectID, l.UserKey)
			if gerr != nil {
				return nil, gerr
			}
			holding, force = now.DiscordID, true
		case errors.Is(err, luarmor.ErrInvalidDiscordID):
			log.WarnContext(ctx, "luarmor refused a verified Discord account as invalid", "luarmor_message", luarmorMessage(err))
			return refused(discordRefusedInvalid), nil
		case errors.Is(err, luarmor.ErrDiscordInUse), errors.Is(err, luarmor.ErrDiscordUnrecognised):
			holder, herr := keyHoldingDiscordID(ctx, w.Luarmor, l.ProjectID, want.ID)
			switch {
			case herr != nil:
				return nil, herr
			case holder == nil && errors.Is(err, luarmor.ErrDiscordUnrecognised):
				log.WarnContext(ctx, "luarmor refused a verified Discord account with a message of no known class, and no key holds it",
					"luarmor_message", luarmorMessage(err))
				return refused(discordRefusedInvalid), nil
			case holder == nil:
				continue // unlinked since: try again
			case holder.UserKey == l.UserKey:
				return done, nil // an earlier attempt linked it
			}
			moved, merr := w.takeDiscordFrom(ctx, l, holder.UserKey, want.ID, owner, lease)
			if merr != nil {
				return nil, merr
			}
			if !moved {
				log.InfoContext(ctx, "the verified Discord account holds another key of the project, which keeps it",
					"holder", logging.MaskKey(holder.UserKey))
				return refused(discordRefusedInUse), nil
			}
		default:
			return nil, err
		}
	}
}

// takeDiscordFrom unlinks the account discordID from the Luarmor key
// holderKey of l's project, if that key may give it up, and reports
// whether it did. The holder's lease is held for the request, renewed with
// l's right before it is sent (the holder's own writer may be sending
// something); a holder whose lease is held is waited for (a snooze).
func (w *SyncKeyWorker) takeDiscordFrom(ctx context.Context, l *postgres.Ledger, holderKey, discordID, owner string, lease time.Duration) (bool, error) {
	holderID, movable, err := postgres.DiscordHolderMovable(ctx, w.Pool, l.ProjectID, holderKey, discordID)
	if err != nil || !movable {
		return false, err
	}
	var held *postgres.LedgerLeaseHeldError
	snooze := func() error {
		return river.JobSnooze(min(max(time.Until(held.Until), 0), time.Second) + 250*time.Millisecond)
	}
	if err := postgres.TakeLedgerLease(ctx, w.Pool, holderID, owner, lease); errors.As(err, &held) {
		return false, snooze()
	} else if err != nil {
		return false, err
	}
	defer func() { _ = postgres.ReleaseLedgerLease(context.WithoutCancel(ctx), w.Pool, holderID, owner, 0) }()
	ctx = budget.WithBeforeSend(ctx, func(ctx context.Context) error {
		if err := postgres.RenewLedgerLease(ctx, w.Pool, l.ID, owner, lease); err != nil {
			return err
		}
		return postgres.RenewLedgerLease(ctx, w.Pool, holderID, owner, lease)
	})
	none := ""
	err = w.Luarmor.UpdateUser(ctx, l.ProjectID, luarmor.UpdateUserRequest{UserKey: holderKey, DiscordID: &none})
	if errors.Is(err, postgres.ErrLedgerLeaseLost) {
		return false, err
	}
	if err != nil && !errors.Is(err, luarmor.ErrNotFound) {
		return false, err
	}
	if err := postgres.ForgetDiscordLink(ctx, w.Pool, holderID); err != nil {
		return false, err
	}
	w.Logger.InfoContext(ctx, "a verified Discord account was taken from a key that held it by a typed ID or an older verification",
		"holder", logging.MaskKey(holderKey), "discord_id", discordID)
	return true, nil
}

// VerifiedDiscord records the Discord account the buyer of order number
// orderID verified, through access (checked again here, under the order's
// lock: a rotation since the sign-in began refuses it), and queues the
// writers of the order's delivered keys in the same transaction. It
// returns the order as it is then.
func (o *Orders) VerifiedDiscord(ctx context.Context, access order.Access, discordID, username string) (*order.Order, error) {
	if !DiscordIDPattern.MatchString(discordID) {
		return nil, order.Errorf(order.EINVALID, "Discord answered an account ID that is not a snowflake")
	}
	sessionID, err := postgres.SessionIDOfOrder(ctx, o.Pool, access.OrderID)
	if err != nil {
		return nil, err
	}
	err = pgx.BeginFunc(ctx, o.Pool, func(tx pgx.Tx) error {
		locked, err := postgres.LockOrder(ctx, tx, sessionID)
		if err != nil {
			return err
		}
		if !access.Grants(locked) {
			return order.Errorf(order.ENOTFOUND, "this order link no longer opens the order")
		}
		if locked.Status == order.StatusRevoked || locked.Status == order.StatusFailed {
			return order.Errorf(order.ECONFLICT, "the order's keys are not usable (%s): there is nothing to link", locked.Status)
		}
		ledgerKeys, err := postgres.VerifyDiscord(ctx, tx, locked.ID, discordID, username)
		if err != nil {
			return err
		}
		params := make([]river.InsertManyParams, len(ledgerKeys))
		for i, id := range ledgerKeys {
			params[i] = river.InsertManyParams{Args: SyncKeyArgs{LedgerKeyID: id}}
		}
		if len(params) > 0 {
			if _, err := o.River.InsertManyTx(ctx, tx, params); err != nil {
				return err
			}
		}
		o.Logger.InfoContext(ctx, "the buyer verified a Discord account for the order",
			"order_ref", logging.OrderRef(sessionID), "discord_id", discordID, "keys", len(ledgerKeys))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return postgres.GetOrder(ctx, o.Pool, sessionID)
}
