package outbound_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/outbound"
)

const secret = "0123456789abcdef0123456789abcdef-outbound"

func event() outbound.Event {
	amount := int64(1999)
	return outbound.Event{ID: "evt_0123", Type: outbound.OrderFulfilled, Created: 1700000000, Data: outbound.Data{
		OrderRef: "ord_abcdef012345", Product: "Monthly", Amount: &amount, Currency: "usd",
		Email: "buyer@example.com", Keys: []string{outbound.KeyLast4("KEYabcdefghijklmnWXYZ")}}}
}

func TestSignatureVerifiesWithTheSecretOnly(t *testing.T) {
	body := []byte(`{"id":"evt_1"}`)
	at := time.Unix(1700000000, 0)
	h := outbound.Sign(secret, at, body)
	require.True(t, strings.HasPrefix(h, "t=1700000000,v1="), h)
	require.NoError(t, outbound.Verify(h, secret, body, at.Add(time.Minute), 5*time.Minute))
	require.ErrorIs(t, outbound.Verify(h, secret+"x", body, at, 5*time.Minute), outbound.ErrBadSignature, "another secret")
	require.ErrorIs(t, outbound.Verify(h, secret, []byte(`{"id":"evt_2"}`), at, 5*time.Minute), outbound.ErrBadSignature, "another body")
	require.ErrorIs(t, outbound.Verify(h, secret, body, at.Add(10*time.Minute), 5*time.Minute), outbound.ErrBadSignature, "too old: a replayed request")
	require.ErrorIs(t, outbound.Verify("v1=00", secret, body, at, 5*time.Minute), outbound.ErrBadSignature, "no timestamp")
}

func TestEventsChooseTheirDestinations(t *testing.T) {
	s := outbound.Settings{WebhookURLs: []string{"https://a.example/hook", "https://b.example/hook"}, Secret: secret,
		Events: []outbound.EventType{outbound.OrderFulfilled, outbound.KeyRevoked}, DiscordURL: "https://discord.example/api/webhooks/1/token"}
	require.Len(t, s.Destinations(outbound.OrderFulfilled), 3, "both endpoints and Discord")
	require.Equal(t, []outbound.Destination{{Kind: outbound.DestinationDiscord, Endpoint: "discord"}}, s.Destinations(outbound.OrderFailed),
		"the endpoints did not subscribe to failures; Discord hears of them")
	require.Empty(t, s.Destinations(outbound.KeyExpiring))
	require.Len(t, s.Destinations(outbound.StockLow), 1, "stock is Discord's only")
	var off *outbound.Settings
	require.Empty(t, off.Destinations(outbound.OrderFulfilled))

	_, err := s.URL(outbound.Destination{Kind: outbound.DestinationWebhook, Endpoint: "https://gone.example/hook"})
	require.ErrorContains(t, err, "no longer in OUTBOUND_WEBHOOK_URL")

	events, err := outbound.ParseEvents("order.fulfilled, key.revoked,order.fulfilled")
	require.NoError(t, err)
	require.Equal(t, []outbound.EventType{outbound.OrderFulfilled, outbound.KeyRevoked}, events)
	_, err = outbound.ParseEvents("order.paid")
	require.ErrorContains(t, err, `"order.paid" is not an event`)
	_, err = outbound.ParseEvents("stock.low")
	require.Error(t, err, "stock levels go to Discord only")
}

func TestKeyLast4NeverShowsMuchOfAKey(t *testing.T) {
	require.Equal(t, "WXYZ", outbound.KeyLast4("KEYabcdefghijklmnWXYZ"))
	require.Empty(t, outbound.KeyLast4("short123"), "a key this short shows nothing")
}

// The Discord message names the order, product and amount, and nothing
// that grants access or names the buyer.
func TestDiscordBodyHasNoEmailOrKey(t *testing.T) {
	body, err := outbound.DiscordBody(event())
	require.NoError(t, err)
	require.NotContains(t, string(body), "buyer@example.com")
	require.NotContains(t, string(body), "WXYZ")
	var msg struct {
		Embeds []struct {
			Title  string `json:"title"`
			Color  int    `json:"color"`
			Fields []struct{ Name, Value string }
		} `json:"embeds"`
	}
	require.NoError(t, json.Unmarshal(body, &msg))
	require.Len(t, msg.Embeds, 1)
	require.Equal(t, "New sale", msg.Embeds[0].Title)
	fields := map[string]string{}
	for _, f := range msg.Embeds[0].Fields {
		fields[f.Name] = f.Value
	}
	require.Equal(t, "ord_abcdef012345", fields["Order"])
	require.Equal(t, "Monthly", fields["Product"])
	require.Contains(t, fields["Amount"], "19.99")
}

func TestSendClassifiesAnswers(t *testing.T) {
	status := 0
	var got *http.Request
	var gotBody []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, gotBody = r, must(io.ReadAll(r.Body))
		switch status {
		case http.StatusTooManyRequests:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"message":"You are being rate limited.","retry_after":1.5,"global":false}`))
		case http.StatusMovedPermanently:
			http.Redirect(w, r, "/elsewhere", status)
		default:
			w.WriteHeader(status)
		}
	}))
	defer srv.Close()
	send := func(kind string) outbound.Result {
		return outbound.Send(context.Background(), outbound.NewClient(), outbound.Request{Kind: kind, URL: srv.URL, Event: event(),
			Secret: secret, At: time.Now()}, time.Second)
	}
	for s, want := range map[int]outbound.Outcome{200: outbound.Delivered, 204: outbound.Delivered, 500: outbound.Retry, 503: outbound.Retry,
		408: outbound.Retry, 429: outbound.Retry, 400: outbound.GiveUp, 401: outbound.GiveUp, 404: outbound.GiveUp, 410: outbound.GiveUp,
		301: outbound.GiveUp} {
		status = s
		res := send(outbound.DestinationWebhook)
		require.Equal(t, want, res.Outcome, "status %d", s)
		require.Equal(t, s, res.Status)
		require.Equal(t, want == outbound.Delivered, res.Err == nil, "status %d: %v", s, res.Err)
	}
	require.Equal(t, "evt_0123", got.Header.Get(outbound.IdempotencyHeader))
	require.NoError(t, outbound.Verify(got.Header.Get(outbound.SignatureHeader), secret, gotBody, time.Now(), time.Minute))

	status = 429
	res := send(outbound.DestinationDiscord)
	require.Equal(t, 1500*time.Millisecond, res.RetryAfter, "Discord's retry_after is honoured")
	require.Empty(t, got.Header.Get(outbound.SignatureHeader), "Discord gets no signature of the shop's secret")

	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // the server notices the client leaving once the body is read
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	res = outbound.Send(context.Background(), outbound.NewClient(), outbound.Request{Kind: outbound.DestinationWebhook, URL: slow.URL,
		Event: event(), Secret: secret, At: time.Now()}, 200*time.Millisecond)
	require.Equal(t, outbound.Retry, res.Outcome)
	require.ErrorContains(t, res.Err, "no answer within 200ms")

	// A refused connection is retried, and its error never names the URL
	// (Discord's holds its token).
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	res = outbound.Send(context.Background(), outbound.NewClient(), outbound.Request{Kind: outbound.DestinationDiscord,
		URL: gone.URL + "/api/webhooks/1/secret-token", Event: event()}, time.Second)
	require.Equal(t, outbound.Retry, res.Outcome)
	require.ErrorContains(t, res.Err, "posting:")
	require.NotContains(t, res.Err.Error(), "secret-token")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
