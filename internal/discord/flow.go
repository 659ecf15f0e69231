package discord

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// A sign-in is bound to the order and to the browser that began it. The
// browser holds a cookie (HttpOnly, SameSite=Lax, scoped to the callback,
// FlowTTL long) sealing the order's number and access generation, a
// random nonce and the PKCE verifier, MAC'd with the fleet's signing key;
// the state sent to Discord is another MAC of the same. The callback
// accepts a state only with the cookie it was made from, so a callback
// carried to another browser, a forged state, a cookie of another order
// and an expired sign-in are refused before Discord is asked, and the
// code Discord hands back is only good with the verifier of the sign-in
// that asked for it.

// FlowTTL is how long a sign-in may take, from the order page to the
// callback.
const FlowTTL = 10 * time.Minute

// CookieName names the sign-in's cookie.
const CookieName = "fulfiller_discord_signin"

const (
	flowVersion    = 1
	nonceBytes     = 16
	verifierLength = 43 // oauth2.GenerateVerifier: 32 random bytes, base64url
	flowPayloadLen = 1 + 8 + 8 + 8 + nonceBytes + verifierLength
	cookieContext  = "fulfiller discord sign-in cookie v1\x00"
	stateContext   = "fulfiller discord sign-in state v1\x00"
)

// ErrFlowInvalid refuses a cookie that is missing, malformed, forged,
// tampered with or expired.
var ErrFlowInvalid = errors.New("no sign-in under way in this browser, or it expired")

// Flow is one sign-in under way.
type Flow struct {
	// OrderID and Generation are the order and the access generation of
	// the link it began from: a rotation since refuses it.
	OrderID    int64
	Generation int64
	// Nonce makes each sign-in's state unique; a used one is refused.
	Nonce string
	// Verifier is the PKCE code verifier; Discord gets its S256 challenge.
	Verifier  string
	ExpiresAt time.Time
}

// Flows seals and opens sign-ins with the fleet's signing key.
type Flows struct{ secret []byte }

// NewFlows returns the sealer of secret (the fleet's signing key).
func NewFlows(secret []byte) *Flows { return &Flows{secret: secret} }

// Begin starts a sign-in for the order at its access generation.
func Begin(orderID, generation int64, now time.Time) Flow {
	nonce := make([]byte, nonceBytes)
	_, _ = rand.Read(nonce) // never fails (crypto/rand)
	return Flow{OrderID: orderID, Generation: generation, Nonce: base64.RawURLEncoding.EncodeToString(nonce),
		Verifier: oauth2.GenerateVerifier(), ExpiresAt: time.Unix(now.Add(FlowTTL).Unix(), 0)}
}

func (f Flow) payload() ([]byte, bool) {
	nonce, err := base64.RawURLEncoding.Strict().DecodeString(f.Nonce)
	if err != nil || len(nonce) != nonceBytes || len(f.Verifier) != verifierLength {
		return nil, false
	}
	p := []byte{flowVersion}
	p = binary.BigEndian.AppendUint64(p, uint64(f.OrderID))
	p = binary.BigEndian.AppendUint64(p, uint64(f.Generation))
	p = binary.BigEndian.AppendUint64(p, uint64(f.ExpiresAt.Unix()))
	p = append(p, nonce...)
	return append(p, f.Verifier...), true
}

func (s *Flows) mac(context string, payload []byte) []byte {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(context))
	m.Write(payload)
	return m.Sum(nil)
}

// Seal returns the cookie's value and the state of f.
func (s *Flows) Seal(f Flow) (cookie, state string, ok bool) {
	p, ok := f.payload()
	if !ok {
		return "", "", false
	}
	cookie = base64.RawURLEncoding.EncodeToString(append(p, s.mac(cookieContext, p)...))
	return cookie, base64.RawURLEncoding.EncodeToString(s.mac(stateContext, p)), true
}

// Open checks a cookie's MAC (in constant time) before reading anything
// it says, then its expiry against now; any failure is ErrFlowInvalid.
func (s *Flows) Open(cookie string, now time.Time) (Flow, error) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(cookie)
	if err != nil || len(raw) != flowPayloadLen+sha256.Size {
		return Flow{}, ErrFlowInvalid
	}
	p, mac := raw[:flowPayloadLen], raw[flowPayloadLen:]
	if !hmac.Equal(mac, s.mac(cookieContext, p)) || p[0] != flowVersion {
		return Flow{}, ErrFlowInvalid
	}
	f := Flow{
		OrderID:    int64(binary.BigEndian.Uint64(p[1:9])),
		Generation: int64(binary.BigEndian.Uint64(p[9:17])),
		ExpiresAt:  time.Unix(int64(binary.BigEndian.Uint64(p[17:25])), 0),
		Nonce:      base64.RawURLEncoding.EncodeToString(p[25 : 25+nonceBytes]),
		Verifier:   string(p[25+nonceBytes:]),
	}
	if !now.Before(f.ExpiresAt) || f.ExpiresAt.After(now.Add(FlowTTL+time.Minute)) {
		return Flow{}, ErrFlowInvalid
	}
	return f, nil
}

// StateMatches reports, in constant time, whether state is f's.
func (s *Flows) StateMatches(f Flow, state string) bool {
	p, ok := f.payload()
	if !ok || len(state) > 128 || strings.ContainsAny(state, "=+/") {
		return false
	}
	got, err := base64.RawURLEncoding.Strict().DecodeString(state)
	return err == nil && hmac.Equal(got, s.mac(stateContext, p))
}
