package jobs

import (
	"context"
	"errors"
	"log/slog"

	"github.com/riverqueue/river"

	"fulfiller/internal/logging"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// discordRefused handles a create that Luarmor refused because of the
// buyer's Discord ID. Discord IDs are public and typed by the buyer, so the
// ID proves nothing:
//
//   - in use, by a key this service made for the same Stripe customer (its
//     note's ref: exists in order_keys for that key and its cus: is the
//     order's customer): the purchase adds its days to that key;
//   - in use by any other key: the unit gets a key of its own, without the
//     ID (in_use);
//   - invalid: the unit gets a key of its own, without the ID (invalid);
//   - refused in words the client does not know (ErrDiscordUnrecognised):
//     logged at warn with Luarmor's message, then decided by whether a key
//     holds the ID (handled as in use) or none does (invalid), never by
//     guessing from the message.
//
// The refused create made nothing. The link state is committed before the
// second create, so a retry never sends the ID again; that create runs
// under the unit's lease, renewed before it is sent like any request, and
// a run cut off after it finds the key by its reference.
func (w *CreateKeyWorker) discordRefused(ctx context.Context, job *river.Job[CreateKeyArgs], o *order.Order, k *order.Key, owner string, refusal error, log *slog.Logger) error {
	link := order.DiscordInvalid
	unrecognised := errors.Is(refusal, luarmor.ErrDiscordUnrecognised)
	if unrecognised {
		log.WarnContext(ctx, "luarmor refused the buyer's Discord ID with a message of no known class; deciding by whether a key holds the ID",
			"luarmor_message", luarmorMessage(refusal))
	}
	if errors.Is(refusal, luarmor.ErrDiscordInUse) || unrecognised {
		existing, err := w.keyOfDiscordID(ctx, o, k)
		if err != nil {
			return w.luarmorFailure(ctx, job, k, err, log)
		}
		if existing != nil && ParseNote(existing.Note).Reference == k.Reference {
			// This unit's own key, made by an earlier attempt whose
			// answer was lost.
			expiry, err := w.applyTarget(ctx, k, existing.UserKey)
			if err != nil {
				return w.luarmorFailure(ctx, job, k, err, log)
			}
			return w.deliver(ctx, job, k, delivery{UserKey: existing.UserKey, AuthExpire: expiry, DiscordLinked: true}, log)
		}
		own, err := w.ownedByBuyer(ctx, o, k, existing)
		if err != nil {
			return err
		}
		if own {
			return w.extendDiscordKey(ctx, job, o, k, *existing, log)
		}
		link = order.DiscordInUse
		if unrecognised && existing == nil {
			link = order.DiscordInvalid
			log.WarnContext(ctx, "no key holds the refused Discord ID; the unit is recorded as refused an invalid ID",
				"luarmor_message", luarmorMessage(refusal))
		}
	}
	if err := postgres.SetDiscordLink(ctx, w.Pool, k.ID, link); err != nil {
		return err
	}
	k.DiscordLink = link
	log.InfoContext(ctx, "luarmor refused the buyer's Discord ID; creating the key without it", "discord_link", link)
	return w.create(ctx, job, o, k, owner, log)
}

// keyOfDiscordID finds the project's key linked to the order's Discord ID,
// or nil when Luarmor lists none (unlinked since the refusal: the unit is
// then made without the ID, like one whose ID is someone else's).
func (w *CreateKeyWorker) keyOfDiscordID(ctx context.Context, o *order.Order, k *order.Key) (*luarmor.User, error) {
	return keyHoldingDiscordID(ctx, w.Luarmor, k.ProjectID, o.DiscordID)
}

// keyHoldingDiscordID finds the project's key linked to the Discord ID, or
// nil when Luarmor lists none.
func keyHoldingDiscordID(ctx context.Context, lm Luarmor, projectID, discordID string) (*luarmor.User, error) {
	users, err := lm.ListUsers(ctx, projectID, luarmor.ListUsersOptions{DiscordID: discordID})
	if err != nil {
		return nil, err
	}
	for i := range users {
		if users[i].DiscordID == discordID {
			return &users[i], nil
		}
	}
	return nil, nil
}

// isDiscordRefusal reports whether Luarmor refused a request because of
// its Discord ID: in use, invalid, or in words of no known class.
func isDiscordRefusal(err error) bool {
	return errors.Is(err, luarmor.ErrDiscordInUse) || errors.Is(err, luarmor.ErrInvalidDiscordID) ||
		errors.Is(err, luarmor.ErrDiscordUnrecognised)
}

// luarmorMessage is Luarmor's own message in a refusal (it never holds a
// key or a token), or the error's text for other failures.
func luarmorMessage(err error) string {
	var le *luarmor.Error
	if errors.As(err, &le) {
		return le.Message
	}
	return err.Error()
}

// ownedByBuyer reports whether a key may be handed to the order's buyer:
// this service made it for the order's Stripe customer, by its note and by
// the database, and it is not banned (a key taken back after a refund or a
// dispute is not revived by a new purchase). An order without a customer
// ID never matches.
func (w *CreateKeyWorker) ownedByBuyer(ctx context.Context, o *order.Order, k *order.Key, u *luarmor.User) (bool, error) {
	if u == nil || o.CustomerID == "" || u.IsBanned() {
		return false, nil
	}
	facts := ParseNote(u.Note)
	if facts.CustomerID != o.CustomerID || facts.Reference == "" {
		return false, nil
	}
	return postgres.KeyMadeForCustomer(ctx, w.Pool, facts.Reference, k.ProjectID, u.UserKey, o.CustomerID)
}

// extendDiscordKey gives the buyer's own key, which already holds the
// Discord ID, the purchase's days: the unit is delivered with that key, so
// its grant joins the key's ledger, and the key's writer (queued with the
// delivery) sets the key to what all its payments add up to.
func (w *CreateKeyWorker) extendDiscordKey(ctx context.Context, job *river.Job[CreateKeyArgs], o *order.Order, k *order.Key, existing luarmor.User, log *slog.Logger) error {
	log.InfoContext(ctx, "the buyer's Discord ID already had their key; the purchase extends it",
		"user_key", logging.MaskKey(existing.UserKey))
	return w.deliver(ctx, job, k, delivery{UserKey: existing.UserKey, Extended: true, DiscordLinked: true}, log)
}
