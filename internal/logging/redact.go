package logging

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
)

// Redact rewrites text so that nothing in it grants access:
//
//   - a Checkout Session ID (cs_test_…, cs_live_…), which reads an order's
//     keys from the order API, becomes its order reference (OrderRef);
//   - a license key becomes its MaskKey form (…WXYZ);
//   - a Stripe secret or restricted key (sk_live_, sk_test_, rk_live_,
//     rk_test_) or webhook signing secret (whsec_) keeps its prefix only;
//   - the token after "Bearer" is dropped.
//
// License keys are recognised by their shape: Luarmor's keys (and unban
// tokens) are 32 random letters and digits, so a word of exactly 32 letters
// and digits with both cases, standing alone (not inside a longer word or
// an ID with underscores like pi_…, evt_…, price_…), is taken for one. Hex
// digests (eml_…, ord_…, sha256 sums), numbers (River job IDs) and Stripe
// object IDs are left alone.
func Redact(text string) string {
	if !mayHoldSecret(text) {
		return text
	}
	var b strings.Builder
	last := 0 // text[:last] is written
	for i := 0; i < len(text); {
		if !isWordByte(text[i]) {
			i++
			continue
		}
		j := i
		for j < len(text) && isWordByte(text[j]) {
			j++
		}
		if word, changed := redactWord(text[i:j]); changed {
			b.Grow(len(text))
			b.WriteString(text[last:i])
			b.WriteString(word)
			last = j
		}
		i = j
	}
	if last > 0 {
		b.WriteString(text[last:])
		text = b.String()
	}
	if strings.Contains(text, "earer") || strings.Contains(text, "EARER") {
		text = bearerTokens.ReplaceAllString(text, "${1}[REDACTED]")
	}
	return text
}

// mayHoldSecret is Redact's fast path: a text with no run of 32 word
// characters and none of the prefixes holds nothing to redact. Most log
// text is short words, numbers and IDs under 32 characters.
func mayHoldSecret(text string) bool {
	run := 0
	for i := 0; i < len(text); i++ {
		if isWordByte(text[i]) {
			if run++; run >= keyLength {
				return true
			}
			continue
		}
		run = 0
	}
	return strings.Contains(text, "cs_") || strings.Contains(text, "k_live_") || strings.Contains(text, "k_test_") ||
		strings.Contains(text, "whsec_") || strings.Contains(text, "earer") || strings.Contains(text, "EARER")
}

// keyLength is the length of a Luarmor key.
const keyLength = 32

// secretPrefixes start Stripe's secret keys and webhook signing secrets.
var secretPrefixes = []string{"sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"}

// bearerTokens matches an HTTP bearer credential (RFC 6750's b64token) of
// 16 characters or more; the scheme is kept. Shorter words after "bearer"
// are prose ("wrong bearer token"), and no credential of the service is
// that short.
var bearerTokens = regexp.MustCompile(`(?i)(\bbearer\s+)[A-Za-z0-9\-._~+/]{16,}=*`)

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// redactWord rewrites one maximal run of letters, digits and underscores.
func redactWord(w string) (string, bool) {
	changed := false
	if strings.Contains(w, "cs_test_") || strings.Contains(w, "cs_live_") {
		w, changed = ScrubSessionIDs(w), true
	}
	for _, p := range secretPrefixes {
		// A bare prefix (the word "whsec_" in a message, or what is left
		// once redacted) names no secret.
		if at := strings.Index(w, p); at >= 0 && at+len(p) < len(w) {
			return w[:at+len(p)] + "[REDACTED]", true
		}
	}
	if len(w) == keyLength && looksLikeKey(w) {
		return MaskKey(w), true
	}
	return w, changed
}

// looksLikeKey: letters and digits only, with both cases, and not a hex
// number. A random 32-character key misses either case or is all hex with
// odds of about 1 in 10^7; a digest, a number or a lowercase word is never
// taken for a key.
func looksLikeKey(w string) bool {
	var upper, lower, nonHex bool
	for i := 0; i < len(w); i++ {
		c := w[i]
		switch {
		case c >= 'A' && c <= 'Z':
			upper = true
			nonHex = nonHex || c > 'F'
		case c >= 'a' && c <= 'z':
			lower = true
			nonHex = nonHex || c > 'f'
		case c >= '0' && c <= '9':
		default:
			return false
		}
	}
	return upper && lower && nonHex
}

// Redacting wraps h so that every record's message and attribute values
// pass through Redact: strings, errors, fmt.Stringers, byte slices, groups
// and any other value whose text form holds something to redact (that
// value is then logged as its redacted text). It is the one filter between
// the service's code, its libraries and the log: whatever path logs a
// Checkout Session ID, a key or a secret, the line carries none. Wrapping
// twice is wrapping once.
func Redacting(h slog.Handler) slog.Handler {
	if _, ok := h.(redactHandler); ok {
		return h
	}
	return redactHandler{h}
}

type redactHandler struct{ slog.Handler }

// ServiceHandler wraps h as every logger of the service is wrapped: each
// record gets its context's attributes (ContextHandler) and then passes
// through Redacting, so a context's attributes are redacted too. Wrapping
// twice is wrapping once.
func ServiceHandler(h slog.Handler) slog.Handler {
	if c, ok := h.(contextHandler); ok {
		return contextHandler{Redacting(c.Handler)}
	}
	return contextHandler{Redacting(h)}
}

func (h redactHandler) Handle(ctx context.Context, r slog.Record) error {
	msg := Redact(r.Message)
	changed := msg != r.Message
	if !changed {
		// Most records hold nothing to redact: they pass as they are,
		// with nothing allocated.
		r.Attrs(func(a slog.Attr) bool {
			_, changed = redactAttr(a)
			return !changed
		})
		if !changed {
			return h.Handler.Handle(ctx, r)
		}
	}
	out := slog.NewRecord(r.Time, r.Level, msg, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		ra, _ := redactAttr(a)
		out.AddAttrs(ra)
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i], _ = redactAttr(a)
	}
	return redactHandler{h.Handler.WithAttrs(out)}
}

func (h redactHandler) WithGroup(name string) slog.Handler {
	return redactHandler{h.Handler.WithGroup(name)}
}

// redactAttr returns a with its value redacted, and whether it changed.
func redactAttr(a slog.Attr) (slog.Attr, bool) {
	v, changed := redactValue(a.Value)
	if !changed {
		return a, false
	}
	return slog.Attr{Key: a.Key, Value: v}, true
}

func redactValue(v slog.Value) (slog.Value, bool) {
	switch v.Kind() {
	case slog.KindString:
		s := v.String()
		if r := Redact(s); r != s {
			return slog.StringValue(r), true
		}
		return v, false
	case slog.KindGroup:
		group := v.Group()
		var out []slog.Attr
		for i, a := range group {
			ra, c := redactAttr(a)
			if c && out == nil {
				out = append(make([]slog.Attr, 0, len(group)), group[:i]...)
			}
			if out != nil {
				out = append(out, ra)
			}
		}
		if out == nil {
			return v, false
		}
		return slog.GroupValue(out...), true
	case slog.KindLogValuer:
		// Resolved here, so the handler logs the value that was checked.
		r, _ := redactValue(v.Resolve())
		return r, true
	case slog.KindAny:
		if text, ok := textOf(v.Any()); ok {
			if r := Redact(text); r != text {
				return slog.StringValue(r), true
			}
		}
		return v, false
	}
	// Numbers, booleans, times and durations hold no text.
	return v, false
}

// textOf is the text a handler would write for an Any value, for the ones
// that can hold a credential.
func textOf(x any) (string, bool) {
	switch x := x.(type) {
	case nil:
		return "", false
	case error:
		return errorText(x), true
	case fmt.Stringer:
		return x.String(), true
	case []byte:
		return string(x), true
	}
	return fmt.Sprint(x), true
}

// errorText is err.Error(), or a note that it panicked (a nil pointer in
// an error interface): a bad value must not take the log line down.
func errorText(err error) (text string) {
	defer func() {
		if recover() != nil {
			text = "(error whose Error method panicked)"
		}
	}()
	return err.Error()
}
