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
	"net/netip"
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

	// Link emails are counted three ways per KeyLookupWindow, across
	// replicas, and a request is accepted only within all three. A client
	// is an IPv4 address or an IPv6 /64 (one subscriber's allocation); its
	// network an IPv4 address or an IPv6 /48 (one site's).
	//
	// KeyLookupsPerAddress per address and client: a buyer who lost the
	// first link asks again; a stranger asking for the buyer's address
	// from elsewhere spends an allowance of their own, not the buyer's.
	KeyLookupsPerAddress = 3
	// KeyLookupsPerNetwork per client network, whatever the address: a
	// network rotating through addresses (or through the /64s of its /48)
	// gets ten accepted requests an hour, more than a shop's buyers behind
	// one NAT ask for, and every accepted request writes rows and queues a
	// job.
	KeyLookupsPerNetwork = 10
	// KeyLookupsPerAddressAllClients per address, whoever asks: this bounds
	// the mail one address can be sent (30 links an hour, and only to an
	// address that bought something: an address without orders is sent
	// nothing), while a stranger who wants to use up a buyer's allowance
	// needs ten IPv4 addresses (three requests each) or three IPv6 /48s
	// (ten each) within the hour, not a loop from one machine.
	KeyLookupsPerAddressAllClients = 30
	KeyLookupWindow                = time.Hour

	// MaxEmailLength is the longest address accepted (RFC 5321's path).
	MaxEmailLength = 254
	// keyLookupStale: a request whose email could not go out within this
	// long is dropped; a link arriving hours later would only surprise.
	keyLookupStale = time.Hour
	// keyLookupMailWait is how long a replica without mail puts a link
	// email back for, so that a replica with mail (a rolling deploy that
	// turns mail on, or off) sends it; until keyLookupStale.
	keyLookupMailWait = 30 * time.Second
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

// SendKeyLookupEmailArgs emails a find-my-keys link to the address of a
// request, if it bought anything. Queued for every accepted request,
// whether or not the address has orders, so that the request's answer and
// its timing say nothing about the address. The address itself stays in
// the request's row (key_lookup_emails), deleted once the job is done:
// arguments are shown in the River UI and kept as long as jobs are.
type SendKeyLookupEmailArgs struct {
	RequestID int64 `json:"request_id"`
	// Email is the form of jobs queued before request rows existed (a
	// rolling deploy): the normalised address itself. Never set now.
	Email string `json:"email,omitempty"`
}

func (SendKeyLookupEmailArgs) Kind() string { return "send_key_lookup_email" }

func (SendKeyLookupEmailArgs) InsertOpts() river.InsertOpts {
	// A few attempts: a link is only useful soon after it was asked for.
	// No uniqueness: every accepted request is its own row and its own job.
	return river.InsertOpts{Queue: QueueDefault, MaxAttempts: 5}
}

// RequestKeyLookup records a find-my-keys request for email (normalised)
// from client (the requester's address) and queues its email in the same
// commit, unless one of its counts (see KeyLookupsPerAddress) is full:
// then nothing is queued and accepted is false. Both outcomes are the same
// for an address with orders and one without.
func (s *Orders) RequestKeyLookup(ctx context.Context, email string, client netip.Addr) (accepted bool, err error) {
	var refusedBy string
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		secret, err := postgres.KeyLookupSigningKey(ctx, tx)
		if err != nil {
			return err
		}
		refusedBy, err = postgres.ReserveKeyLookup(ctx, tx, keyLookupCounts(secret, email, client), KeyLookupWindow)
		if err != nil || refusedBy != "" {
			return err
		}
		id, err := postgres.AddKeyLookupEmail(ctx, tx, email)
		if err != nil {
			return err
		}
		_, err = s.River.InsertTx(ctx, tx, SendKeyLookupEmailArgs{RequestID: id}, nil)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("queueing a find-my-keys email: %w", err)
	}
	if refusedBy != "" {
		s.Logger.InfoContext(ctx, "find-my-keys request over a limit; no email queued",
			"email_ref", EmailRef(email), "limit", refusedBy, "per", KeyLookupWindow)
		return false, nil
	}
	return true, nil
}

// keyLookupCounts are the counts a request for email from client must fit
// in. The client's counts are keyed by an HMAC under the fleet's signing
// key, so their rows name no client: a plain hash of an IPv4 address is
// reversed by trying all 2^32.
func keyLookupCounts(secret []byte, email string, client netip.Addr) []postgres.KeyLookupCount {
	one, network := keyLookupClient(client)
	digest := sha256.Sum256([]byte(email))
	return []postgres.KeyLookupCount{
		{Scope: postgres.KeyLookupByAddress, Digest: digest[:], Limit: KeyLookupsPerAddressAllClients},
		{Scope: postgres.KeyLookupByAddressClient, Digest: clientDigest(secret, postgres.KeyLookupByAddressClient, email+"\x00"+one),
			Limit: KeyLookupsPerAddress},
		{Scope: postgres.KeyLookupByNetwork, Digest: clientDigest(secret, postgres.KeyLookupByNetwork, network),
			Limit: KeyLookupsPerNetwork},
	}
}

// keyLookupClient is what the limits count a requester by: its client (an
// IPv4 address, or its IPv6 /64) and its network (the IPv4 address, or the
// IPv6 /48).
func keyLookupClient(ip netip.Addr) (client, network string) {
	ip = ip.Unmap()
	if !ip.Is6() {
		return ip.String(), ip.String()
	}
	p64, _ := ip.Prefix(64) // never fails for an IPv6 address
	p48, _ := ip.Prefix(48)
	return p64.String(), p48.String()
}

const clientDigestContext = "fulfiller find-my-keys client v1\x00"

func clientDigest(secret []byte, scope, subject string) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(clientDigestContext))
	mac.Write([]byte(scope + "\x00" + subject))
	return mac.Sum(nil)
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
	age := w.Now().Sub(job.CreatedAt)
	if age > keyLookupStale {
		reason := fmt.Errorf("the find-my-keys request is %s old: its link is not sent any more", age.Round(time.Minute))
		if w.Mail == nil {
			reason = fmt.Errorf("no replica with mail (SMTP_URL) took this find-my-keys request within %s: its link is not sent any more",
				keyLookupStale)
		}
		return river.JobCancel(errors.Join(reason, w.forget(ctx, job)))
	}
	if w.Mail == nil {
		// This replica cannot send mail; another may (a rolling deploy
		// that turns mail on, or off). A snooze uses no attempt; past
		// keyLookupStale the request is dropped (above), with the reason.
		return river.JobSnooze(keyLookupMailWait)
	}
	email := job.Args.Email
	if job.Args.RequestID != 0 {
		var found bool
		var err error
		if email, found, err = postgres.KeyLookupEmail(ctx, w.Pool, job.Args.RequestID); err != nil {
			return err
		}
		if !found {
			return nil // sent by an earlier run, or forgotten as stale
		}
	}
	if email == "" {
		return nil
	}
	log := w.Logger.With("email_ref", EmailRef(email), "request_id", job.Args.RequestID)
	if err := postgres.ForgetKeyLookups(ctx, w.Pool, KeyLookupWindow, keyLookupStale); err != nil {
		// Housekeeping only: the limits hold either way.
		log.WarnContext(ctx, "could not delete old find-my-keys requests", "error", err)
	}
	found, err := postgres.HasOrdersOfEmail(ctx, w.Pool, email)
	if err != nil {
		return err
	}
	if !found {
		return w.forget(ctx, job) // nothing bought with this address: nothing to send
	}
	expiresAt := w.Now().Add(KeyLookupTokenTTL)
	token, err := NewKeyLookupToken(ctx, w.Pool, email, expiresAt)
	if err != nil {
		return err
	}
	err = w.Mail.SendKeyLookup(ctx, w.Mail.NewKeyLookupEmail(email, token, expiresAt))
	if errors.Is(err, internalmail.ErrBadRecipient) {
		log.ErrorContext(ctx, "the address cannot receive mail; no find-my-keys link sent", "error", err)
		return river.JobCancel(errors.Join(err, w.forget(ctx, job)))
	}
	if err != nil {
		if job.Attempt >= job.MaxAttempts {
			// The last attempt: nothing will read the address again.
			return errors.Join(err, w.forget(ctx, job))
		}
		return err
	}
	log.InfoContext(ctx, "find-my-keys email sent")
	// A run cut off before this sends the link again on retry (see above).
	return w.forget(ctx, job)
}

// forget deletes the address of the job's request: the job is done with it.
func (w *SendKeyLookupEmailWorker) forget(ctx context.Context, job *river.Job[SendKeyLookupEmailArgs]) error {
	if job.Args.RequestID == 0 {
		return nil
	}
	return postgres.ForgetKeyLookupEmail(context.WithoutCancel(ctx), w.Pool, job.Args.RequestID)
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
	tokenContext   = "fulfiller find-my-keys token v1\x00" //nolint:gosec // G101: a MAC domain separator, not a secret
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
