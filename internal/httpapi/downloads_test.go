package httpapi

import (
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
)

func TestKeyFilesHoldTheUsableKeysOnly(t *testing.T) {
	t.Parallel()
	expire := time.Date(2027, 3, 4, 5, 6, 0, 0, time.UTC).Unix()
	never := int64(-1)
	o := &order.Order{CheckoutSessionID: sessionID, Status: order.StatusFulfilled, Keys: []order.Key{
		{UserKey: "KEYDATED", PriceID: "price_a", Status: order.KeyActive, KeyDays: 30, AuthExpire: &expire},
		{UserKey: "KEYREVOKED", PriceID: "price_a", Status: order.KeyBlacklisted, KeyDays: 30},
		{UserKey: "KEYFIRSTUSE", PriceID: "price_a", Status: order.KeyActive, KeyDays: 30},
		{UserKey: "KEYSUSPENDED", PriceID: "price_a", Status: order.KeyActive, KeyDays: 30, Suspended: true},
		{UserKey: "KEYNEVER", PriceID: "price_b", Status: order.KeyActive, AuthExpire: &never},
		{UserKey: "KEYLIFETIME", PriceID: "price_b", Status: order.KeyActive},
	}}
	v, err := newOrderView(o, sessionID, time.Now())
	require.NoError(t, err)
	keys := v.UsableKeys()
	require.Equal(t, "KEYDATED\nKEYFIRSTUSE\nKEYNEVER\nKEYLIFETIME\n", string(keysText(keys)))

	rows, err := csv.NewReader(strings.NewReader(string(keysCSV(keys)))).ReadAll()
	require.NoError(t, err)
	require.Equal(t, [][]string{
		{"product", "key", "status", "expires"},
		{"price_a", "KEYDATED", "active", "2027-03-04T05:06:00Z"},
		{"price_a", "KEYFIRSTUSE", "active", "waits for first use"},
		{"price_b", "KEYNEVER", "active", "never"},
		{"price_b", "KEYLIFETIME", "active", "never"},
	}, rows)
	require.True(t, strings.HasSuffix(string(keysCSV(keys)), "\r\n"), "RFC 4180 line ends")
}

func TestKeysCSVDefusesFormulasAndQuotesCells(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		`=HYPERLINK("http://evil.example","Pro")`: `'=HYPERLINK("http://evil.example","Pro")`,
		"+1 month":          "'+1 month",
		"-5 days":           "'-5 days",
		"@SUM(A1)":          "'@SUM(A1)",
		"\tTabbed":          "'\tTabbed",
		"\rReturn":          "'\rReturn",
		"Pro, monthly":      "Pro, monthly",
		`The "best" plan`:   `The "best" plan`,
		"Line one\nline 2":  "Line one\nline 2",
		"Pro = best + more": "Pro = best + more",
		"":                  "",
	} {
		require.Equal(t, want, csvCell(name), "%q", name)
		out := string(keysCSV([]keyView{{ProductName: name, UserKey: "KEY", Status: "active"}}))
		rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		require.NoError(t, err, "%q makes a well-formed file: %s", name, out)
		require.Len(t, rows, 2)
		// encoding/csv writes a carriage return inside a cell as nothing
		// (with CRLF line ends): the apostrophe still leads the cell.
		require.Equal(t, []string{strings.ReplaceAll(want, "\r", ""), "KEY", "active", "never"}, rows[1], "%q is one cell, defused", name)
	}
	require.Contains(t, string(keysCSV([]keyView{{ProductName: `Pro, "monthly"`, UserKey: "KEY"}})), `"Pro, ""monthly"""`)
}
