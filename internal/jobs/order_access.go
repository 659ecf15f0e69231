package jobs

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"fulfiller/internal/logging"
	"fulfiller/internal/mail"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// Signed order links. A buyer opens an order by its Checkout Session ID
// (Stripe's success_url redirect names it) or by a link whose token names
// the order's number and access generation, signed with the fleet's
// find-my-keys key under its own context. Support's rotation revokes the
// session ID and moves the generation on, so a leaked link of either kind
// stops working while the buyer is emailed a fresh one.
const (
	// OrderLinkPrefix starts every order link token; a Checkout Session ID
	// starts with cs_, so the two never mix.
	OrderLinkPrefix = "ol_"
	// OrderEmailLinkTTL is how long the link of a keys email works.
	OrderEmailLinkTTL = 365 * 24 * time.Hour
	// OrderLookupLinkTTL is how long the links find my keys hands out work.
	OrderLookupLinkTTL = KeyLookupTokenTTL

	orderLinkPayloadLen = 8 + 8 + 8 // order number, generation, expiry (unix seconds)
	orderLinkContext    = "fulfiller order link v1\x00"
)

// orderLinkLength is the exact length of a token: the prefix, then the
// payload and its MAC in base64url.
var orderLinkLength = len(OrderLinkPrefix) + base64.RawURLEncoding.EncodedLen(orderLinkPayloadLen+sha256.Size)

// ErrOrderLinkInvalid refuses a malformed, tampered or expired link; the
// HTTP adapter answers it as it answers an unknown order.
var ErrOrderLinkInvalid = order.Errorf(order.ENOTFOUND, "no order for this link")

// IsOrderLink reports whether s is shaped as an order link token (not
// whether it is valid).
func IsOrderLink(s string) bool { return strings.HasPrefix(s, OrderLinkPrefix) }

// OrderLinks signs and checks order link tokens with the fleet's key.
type OrderLinks struct{ secret []byte }

// LoadOrderLinks reads the fleet's signing key (creating it on first use).
func LoadOrderLinks(ctx context.Context, db postgres.DB) (*OrderLinks, error) {
	secret, err := postgres.KeyLookupSigningKey(ctx, db)
	if err != nil {
		return nil, err
	}
	return &OrderLinks{secret: secret}, nil
}

// Sign returns a token granting o, at its current access generation, until
// expiresAt.
func (l *OrderLinks) Sign(o *order.Order, expiresAt time.Time) string {
	payload := binary.BigEndian.AppendUint64(nil, uint64(o.ID))
	payload = binary.BigEndian.AppendUint64(payload, uint64(o.AccessGeneration))
	payload = binary.BigEndian.AppendUint64(payload, uint64(expiresAt.Unix()))
	return OrderLinkPrefix + base64.RawURLEncoding.EncodeToString(append(payload, l.mac(payload)...))
}

func (l *OrderLinks) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, l.secret)
	m.Write([]byte(orderLinkContext))
	m.Write(payload)
	return m.Sum(nil)
}

// Verify returns the access a token names and when it expires. It checks
// the MAC (in constant time) before reading anything the token says, then
// the expiry against now; any failure is ErrOrderLinkInvalid. Whether the
// access still grants the order (its generation) is the order's to say:
// order.Access.Grants.
func (l *OrderLinks) Verify(token string, now time.Time) (order.Access, time.Time, error) {
	encoded, ok := strings.CutPrefix(token, OrderLinkPrefix)
	if !ok || len(token) != orderLinkLength {
		return order.Access{}, time.Time{}, ErrOrderLinkInvalid
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(encoded)
	if err != nil || len(raw) != orderLinkPayloadLen+sha256.Size {
		return order.Access{}, time.Time{}, ErrOrderLinkInvalid
	}
	payload, mac := raw[:orderLinkPayloadLen], raw[orderLinkPayloadLen:]
	if !hmac.Equal(mac, l.mac(payload)) {
		return order.Access{}, time.Time{}, ErrOrderLinkInvalid
	}
	id := int64(binary.BigEndian.Uint64(payload[0:8]))
	generation := int64(binary.BigEndian.Uint64(payload[8:16]))
	expiresAt := time.Unix(int64(binary.BigEndian.Uint64(payload[16:24])), 0)
	if !now.Before(expiresAt) {
		return order.Access{}, time.Time{}, ErrOrderLinkInvalid
	}
	if expiresAt.After(now.Add(OrderEmailLinkTTL + 24*time.Hour)) {
		// Signed by this service, yet valid far longer than it issues:
		// a clock gone wrong somewhere; refuse rather than honour it.
		return order.Access{}, time.Time{}, ErrOrderLinkInvalid
	}
	return order.Access{OrderID: id, Generation: generation}, expiresAt, nil
}

// RotatedAccess is the outcome of a rotation of an order's access.
type RotatedAccess struct {
	OrderRef   string
	Generation int64 // the generation links are signed with from now on
	// EmailDelivery is the keys email queued with the fresh link; 0 when
	// none was queued now (NoEmail says why).
	EmailDelivery int
	// EmailAfterReissue: the fresh link is emailed once the reissue that
	// came with the rotation is finished.
	EmailAfterReissue bool
	NoEmail           string
}

// RotateOrderAccess is support's "revoke link": in one transaction, the
// order's Checkout Session ID stops opening it, every link signed before
// stops too, and a keys email with a fresh link is queued for the buyer
// (when mail is on and the order is fulfilled with an address; NoEmail
// says otherwise). Asking again rotates again: the previous fresh link
// stops as well, and a new one is emailed.
func (s *Support) RotateOrderAccess(ctx context.Context, actor, idOrRef, reason string) (*RotatedAccess, error) {
	if err := checkReason(reason); err != nil {
		return nil, err
	}
	id, err := s.SessionOf(ctx, idOrRef)
	if err != nil {
		return nil, err
	}
	var out *RotatedAccess
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		o, err := postgres.LockOrder(ctx, tx, id)
		if err != nil {
			return err
		}
		if out, err = rotateAccess(ctx, tx, s.Mail, s.inserter(tx), o, 0); err != nil {
			return err
		}
		detail := map[string]any{"access_generation": out.Generation, "email_delivery": out.EmailDelivery}
		if out.NoEmail != "" {
			detail["no_email"] = out.NoEmail
		}
		return auditOrder(ctx, tx, actor, "rotate-link", o, "", reason, detail)
	})
	if err != nil {
		return nil, err
	}
	s.logRotation(ctx, actor, reason, out)
	return out, nil
}

// rotateWithReissue rotates the access of o, whose key the reissue
// replaces, in the transaction (holding o's lock) that recorded the
// reissue: a reissue still under way owes the fresh link's email until it
// finishes, with the new key; a finished one has it queued now.
func (s *Support) rotateWithReissue(ctx context.Context, tx pgx.Tx, o *order.Order, reissueID int64) (*RotatedAccess, error) {
	r, err := postgres.GetReissue(ctx, tx, reissueID)
	if err != nil {
		return nil, err
	}
	if r.Status != "queued" {
		return rotateAccess(ctx, tx, s.Mail, s.inserter(tx), o, 0)
	}
	return rotateAccess(ctx, tx, s.Mail, s.inserter(tx), o, reissueID)
}

// inserter inserts jobs in tx with support's client (a worker's is in its
// context instead: insertMany).
func (s *Support) inserter(tx pgx.Tx) func(context.Context, river.JobArgs) error {
	return func(ctx context.Context, args river.JobArgs) error {
		_, err := s.River.InsertTx(ctx, tx, args, nil)
		return err
	}
}

// rotateAccess rotates o's access (tx holds its lock) and queues the fresh
// link's email, or, with a reissue under way, records that the reissue owes
// it.
func rotateAccess(ctx context.Context, tx pgx.Tx, mailer *mail.Sender, insert func(context.Context, river.JobArgs) error,
	o *order.Order, reissueID int64) (*RotatedAccess, error) {
	generation, err := postgres.RotateOrderAccess(ctx, tx, o.CheckoutSessionID)
	if err != nil {
		return nil, err
	}
	out := &RotatedAccess{OrderRef: logging.OrderRef(o.CheckoutSessionID), Generation: generation}
	if reissueID != 0 {
		out.EmailAfterReissue = true
		return out, postgres.OweLinkEmail(ctx, tx, reissueID)
	}
	out.EmailDelivery, out.NoEmail, err = queueLinkEmail(ctx, tx, mailer, insert, o)
	return out, err
}

// queueLinkEmail records and queues a new keys email of o, which carries
// the order's current link, in the caller's transaction (holding o's
// lock). It queues nothing, and says why, when the email cannot go out:
// mail is off, the order has no address, or it is not fulfilled (the
// keys email of an order is sent once all its keys are delivered).
func queueLinkEmail(ctx context.Context, tx pgx.Tx, mailer *mail.Sender, insert func(context.Context, river.JobArgs) error,
	o *order.Order) (int, string, error) {
	switch {
	case mailer == nil:
		return 0, "mail is off (SMTP_URL unset): give the buyer a way back to the order yourself", nil
	case o.CustomerEmail == "":
		return 0, "the order has no email address to send the fresh link to", nil
	case o.Status != order.StatusFulfilled:
		return 0, fmt.Sprintf("the order is %s: no keys email is sent until it is fulfilled", o.Status), nil
	}
	delivery, err := postgres.NextOrderEmail(ctx, tx, o.CheckoutSessionID, mailer.NewMessageID())
	if err != nil {
		return 0, "", err
	}
	if err := insert(ctx, SendOrderEmailArgs{OrderID: o.ID, OrderRef: logging.OrderRef(o.CheckoutSessionID), Delivery: delivery}); err != nil {
		return 0, "", fmt.Errorf("queueing the fresh link's email of order %s: %w", logging.OrderRef(o.CheckoutSessionID), err)
	}
	return delivery, "", nil
}

// emailOwedLink queues the fresh link's email a finished reissue owes (its
// order's access was rotated with it), once, in the caller's transaction,
// which holds the order's lock.
func emailOwedLink(ctx context.Context, tx pgx.Tx, deps Deps, r *postgres.Reissue, sessionID string) error {
	owed, err := postgres.TakeLinkEmail(ctx, tx, r.ID)
	if err != nil || !owed {
		return err
	}
	o, err := postgres.GetOrder(ctx, tx, sessionID)
	if err != nil {
		return err
	}
	insert := func(ctx context.Context, args river.JobArgs) error { return insertMany(ctx, tx, args) }
	delivery, why, err := queueLinkEmail(ctx, tx, deps.Mail, insert, o)
	if err != nil {
		return err
	}
	log := deps.Logger.With("order_ref", logging.OrderRef(sessionID), "reissue_id", r.ID)
	if why != "" {
		log.WarnContext(ctx, "the reissue rotated the order's link, but no email brings the buyer the fresh one", "why", why)
		return nil
	}
	log.InfoContext(ctx, "fresh order link queued by email after the reissue", "delivery", delivery)
	return nil
}

func (s *Support) logRotation(ctx context.Context, actor, reason string, r *RotatedAccess) {
	attrs := []any{"actor", actor, "action", "rotate-link", "order_ref", r.OrderRef, "access_generation", r.Generation}
	if reason != "" {
		attrs = append(attrs, "reason", reason)
	}
	switch {
	case r.EmailDelivery != 0:
		attrs = append(attrs, "email_delivery", r.EmailDelivery)
	case r.EmailAfterReissue:
		attrs = append(attrs, "email", "after the reissue")
	default:
		attrs = append(attrs, "no_email", r.NoEmail)
	}
	s.Logger.InfoContext(ctx, "order access rotated: its session ID and earlier links no longer open it", attrs...)
}
