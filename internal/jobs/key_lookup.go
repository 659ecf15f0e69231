package jobs

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	internalmail "fulfiller/internal/mail"
	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
)

// Find my keys: a buyer types their address, and if it bought anything, an
// email brings them a link that lists its orders and keys for a while.
const (
	// KeyLookupTokenTTL is how long a find-my-keys link works.
	KeyLookupTokenTTL = 30 * time.Minute
	// KeyLookupsPerAddress link emails at most per address and
	// KeyLookupWindow, whoever asks, across replicas.
	KeyLookupsPerAddress = 3
	KeyLookupWindow      = time.Hour
	// MaxEmailLength is the longest address accepted (RFC 5321's path).
	MaxEmailLength = 254
	// keyLookupStale: a request whose email could not go out within this
	// long is dropped; a link arriving hours later would only surprise.
	keyLookupStale = time.Hour
)

// NormalizeEmail checks a typed address and returns the form orders are
// matched on: a bare address (no display name), trimmed, lower case.
func NormalizeEmail(raw string) (string, error) {
	trimmed := strings.TrimSpace(raw)
	if trimmed == "" || len(trimmed) > MaxEmailLength {
		return "", order.Errorf(order.EINVALID, "email must be an address of at most %d characters, such as buyer@example.com", MaxEmailLength)
	}
	a, err := mail.ParseAddress(trimmed)
	if err != nil || a.Name != "" || a.Address != trimmed {
		return "", order.Errorf(order.EINVALID, "email is not a plain address such as buyer@example.com")
	}
	return strings.ToLower(trimmed), nil
}

// EmailRef names an address in logs without spelling it out.
func EmailRef(email string) string {
	sum := sha256.Sum256([]byte(email))
	return "eml_" + hex.EncodeToString(sum[:6])
}

// SendKeyLookupEmailArgs emails a find-my-keys link to an address, if it
// bought anything. Queued for every accepted request, whether or not the
// address has orders, so that the request's answer and its timing say
// nothing about the address.
type SendKeyLookupEmailArgs struct {
	Email string `json:"email"` // normalised
}

func (SendKeyLookupEmailArgs) Kind() string { return "send_key_lookup_email" }

func (SendKeyLookupEmailArgs) InsertOpts() river.InsertOpts {
	// A few attempts: a link is only useful soon after it was asked for.
	return river.InsertOpts{Queue: QueueDefault, MaxAttempts: 5}
}

// RequestKeyLookup records a find-my-keys request for email (normalised)
// and queues its email in the same commit, unless the address had its
// KeyLookupsPerAddress links within KeyLookupWindow: then nothing is
// queued and accepted is false. Both outcomes are the same for an address
// with orders and one without.
func (s *Orders) RequestKeyLookup(ctx context.Context, email string) (accepted bool, err error) {
	digest := sha256.Sum256([]byte(email))
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		accepted, err = postgres.ReserveKeyLookup(ctx, tx, digest[:], KeyLookupsPerAddress, KeyLookupWindow)
		if err != nil || !accepted {
			return err
		}
		_, err = s.River.InsertTx(ctx, tx, SendKeyLookupEmailArgs{Email: email}, nil)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("queueing a find-my-keys email: %w", err)
	}
	if !accepted {
		s.Logger.InfoContext(ctx, "find-my-keys request over the address's limit; no email queued",
			"email_ref", EmailRef(email), "limit", KeyLookupsPerAddress, "per", KeyLookupWindow)
	}
	return accepted, nil
}

// SendKeyLookupEmailWorker works SendKeyLookupEmailArgs. A run that is cut
// off after the server took the message sends it again on retry, with a
// new link: both work, and both expire.
type SendKeyLookupEmailWorker struct {
	river.WorkerDefaults[SendKeyLookupEmailArgs]
	Deps
}

// Timeout covers one SMTP conversation and the queries around it.
func (w *SendKeyLookupEmailWorker) Timeout(*river.Job[SendKeyLookupEmailArgs]) time.Duration {
	return 2 * time.Minute
}

func (w *SendKeyLookupEmailWorker) Work(ctx context.Context, job *river.Job[SendKeyLookupEmailArgs]) error {
	if w.Mail == nil {
		return river.JobCancel(errors.New("find my keys needs mail (SMTP_URL unset): this link is not sent"))
	}
	log := w.Logger.With("email_ref", EmailRef(job.Args.Email))
	if age := w.Now().Sub(job.CreatedAt); age > keyLookupStale {
		return river.JobCancel(fmt.Errorf("the find-my-keys request is %s old: its link is not sent any more", age.Round(time.Minute)))
	}
	if err := postgres.ForgetKeyLookups(ctx, w.Pool, KeyLookupWindow); err != nil {
		// Housekeeping only: the limits hold either way.
		log.WarnContext(ctx, "could not delete old find-my-keys requests", "error", err)
	}
	found, err := postgres.HasOrdersOfEmail(ctx, w.Pool, job.Args.Email)
	if err != nil {
		return err
	}
	if !found {
		return nil // nothing bought with this address: nothing to send
	}
	expiresAt := w.Now().Add(KeyLookupTokenTTL)
	token, err := NewKeyLookupToken(ctx, w.Pool, job.Args.Email, expiresAt)
	if err != nil {
		return err
	}
	err = w.Mail.SendKeyLookup(ctx, w.Mail.NewKeyLookupEmail(job.Args.Email, token, expiresAt))
	if errors.Is(err, internalmail.ErrBadRecipient) {
		log.ErrorContext(ctx, "the address cannot receive mail; no find-my-keys link sent", "error", err)
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "find-my-keys email sent")
	return nil
}

// A token is base64url(expiry || email || mac): expiry in unix seconds
// (8 bytes, big-endian), the normalised address, and HMAC-SHA256 of both
// under the fleet's signing key. It holds what it grants, so checking it
// needs no record of the tokens issued.
const (
	tokenExpiryLen = 8
	tokenMACLen    = sha256.Size
	tokenMinEmail  = len("a@b")
	// maxTokenLength bounds the encoded token before anything is decoded.
	maxTokenLength = (tokenExpiryLen + MaxEmailLength + tokenMACLen + 2) / 3 * 4
	tokenContext   = "fulfiller find-my-keys token v1\x00"
)

var (
	errTokenInvalid = order.Errorf(order.EUNAUTHORIZED,
		"this find-my-keys link is not valid; request a new link from the find-my-keys form")
	errTokenExpired = order.Errorf(order.EUNAUTHORIZED,
		"this find-my-keys link has expired (links work for 30 minutes); request a new link from the find-my-keys form")
)

// NewKeyLookupToken signs a token granting email's orders until expiresAt.
func NewKeyLookupToken(ctx context.Context, db postgres.DB, email string, expiresAt time.Time) (string, error) {
	secret, err := postgres.KeyLookupSigningKey(ctx, db)
	if err != nil {
		return "", err
	}
	return signKeyLookupToken(secret, email, expiresAt), nil
}

// VerifyKeyLookupToken returns the address a token grants and when it
// expires; a malformed, tampered or expired token is order.EUNAUTHORIZED.
func VerifyKeyLookupToken(ctx context.Context, db postgres.DB, token string, now time.Time) (email string, expiresAt time.Time, err error) {
	if len(token) > maxTokenLength {
		return "", time.Time{}, errTokenInvalid
	}
	secret, err := postgres.KeyLookupSigningKey(ctx, db)
	if err != nil {
		return "", time.Time{}, err
	}
	return checkKeyLookupToken(secret, token, now)
}

func signKeyLookupToken(secret []byte, email string, expiresAt time.Time) string {
	payload := binary.BigEndian.AppendUint64(nil, uint64(expiresAt.Unix()))
	payload = append(payload, email...)
	return base64.RawURLEncoding.EncodeToString(append(payload, tokenMAC(secret, payload)...))
}

func tokenMAC(secret, payload []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(tokenContext))
	mac.Write(payload)
	return mac.Sum(nil)
}

// checkKeyLookupToken verifies the token's MAC (in constant time) before
// reading anything it says, then its expiry against now.
func checkKeyLookupToken(secret []byte, token string, now time.Time) (string, time.Time, error) {
	if len(token) > maxTokenLength {
		return "", time.Time{}, errTokenInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) < tokenExpiryLen+tokenMinEmail+tokenMACLen || len(raw) > tokenExpiryLen+MaxEmailLength+tokenMACLen {
		return "", time.Time{}, errTokenInvalid
	}
	payload, mac := raw[:len(raw)-tokenMACLen], raw[len(raw)-tokenMACLen:]
	if !hmac.Equal(mac, tokenMAC(secret, payload)) {
		return "", time.Time{}, errTokenInvalid
	}
	expiresAt := time.Unix(int64(binary.BigEndian.Uint64(payload[:tokenExpiryLen])), 0)
	if !now.Before(expiresAt) {
		return "", time.Time{}, errTokenExpired
	}
	if expiresAt.After(now.Add(KeyLookupTokenTTL + time.Minute)) {
		// Signed by this service, yet valid far longer than it issues:
		// a clock gone wrong somewhere; refuse rather than honour it.
		return "", time.Time{}, errTokenInvalid
	}
	return string(payload[tokenExpiryLen:]), expiresAt, nil
}
