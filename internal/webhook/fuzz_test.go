package webhook

import (
	"bytes"
	"encoding/json"
	"regexp"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	stripewebhook "github.com/stripe/stripe-go/v76/webhook"

	"fulfiller/internal/jobs"
	"fulfiller/internal/postgres"
)

// What PostgreSQL and the workers can take, written independently of the
// checks in event.go.
var (
	storableEventID    = regexp.MustCompile(`^evt_[A-Za-z0-9_]{1,251}$`)
	storableType       = regexp.MustCompile(`^[a-z0-9_.]{1,128}$`)
	storableAPIVersion = regexp.MustCompile(`^[A-Za-z0-9._-]{0,64}$`)
	storableObjectID   = regexp.MustCompile(`^[A-Za-z0-9_]{0,255}$`)
)

// FuzzVerifyAndParse feeds the endpoint's verification and ParseEvent any
// body and Stripe-Signature header. With signed, the body carries a valid
// signature, so the fuzzer explores ParseEvent; otherwise it explores the
// header's parsing. Nothing may panic, and whatever ParseEvent accepts must
// be storable and readable by the job.
func FuzzVerifyAndParse(f *testing.F) {
	for _, body := range sampleEvents(f) {
		f.Add(body, "", true)
	}
	for _, pc := range poisonCases(f) {
		f.Add(pc.Body, "", true)
	}
	body := sampleEvents(f)["checkout.session.completed"]
	for _, header := range []string{
		"", "t=abc,v1=zz", "t=1700000000", "v1=00", "t=1700000000,v1=" + string(bytes.Repeat([]byte("0"), 64)),
		"t=,v1=,v0=,", "t=9999999999999999999,v1=ab", "t=-1,v1=ab", ",,,=,=", "t=1700000000,v1=\x00",
	} {
		f.Add(body, header, false)
	}
	h := &Handler{cfg: Config{Secrets: []string{"whsec_rolled_out", secret}, Tolerance: stripewebhook.DefaultTolerance}}

	f.Fuzz(func(t *testing.T, body []byte, header string, signed bool) {
		if signed {
			header = sign(body, time.Now())
		}
		if err := h.verify(body, header); err != nil {
			require.False(t, signed, "a body signed with a configured secret verifies: %v", err)
			require.NotContains(t, err.Error(), secret)
			return
		}
		ev, err := ParseEvent(body)
		if err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		requireStorable(t, body, ev)
		// Decoded in one pass with data.object, the envelope is what a
		// strict decode of it alone reads.
		var strict wireEnvelope
		require.NoError(t, json.Unmarshal(body, &strict), "accepted an envelope encoding/json refuses")
		require.Equal(t, strict, wireEnvelope{ID: ev.ID, Type: ev.Type, APIVersion: ev.APIVersion, Created: ev.CreatedAt.Unix(), Livemode: ev.Livemode})
	})
}

func requireStorable(t *testing.T, body []byte, ev postgres.Event) {
	t.Helper()
	require.True(t, utf8.Valid(body), "accepted a body that is not UTF-8")
	require.Equal(t, body, ev.Payload, "the payload is the body as received")
	require.Regexp(t, storableEventID, ev.ID)
	require.Regexp(t, storableType, ev.Type)
	require.Regexp(t, storableAPIVersion, ev.APIVersion)
	require.Regexp(t, storableObjectID, ev.ObjectID)
	require.False(t, ev.CreatedAt.Before(time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)), "created %v", ev.CreatedAt)
	require.False(t, ev.CreatedAt.After(time.Now().Add(24*time.Hour)), "created %v", ev.CreatedAt)
	_, handled := jobs.HandledObject(ev.Type)
	require.Equal(t, handled, ev.Handled)
	if handled {
		require.NotEmpty(t, ev.ObjectID, "a handled event names its object")
		_, err := jobs.EventObject(body)
		require.NoError(t, err, "the job finds the object intake checked")
	}
}
