package shop_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/shop"
)

func TestAmountsAreWrittenInTheCurrencysOwnDecimals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		amount   int64
		currency string
		want     string
	}{
		{1200, "usd", "$12.00"},
		{500, "USD", "$5.00"},
		{5, "usd", "$0.05"},
		{0, "usd", "$0.00"},
		{1200, "eur", "€12.00"},
		{125050, "eur", "€1,250.50"},
		{123456789, "gbp", "£1,234,567.89"},
		{500, "jpy", "¥500"}, // no minor unit: 500 is ¥500
		{1234567, "jpy", "¥1,234,567"},
		{1500, "kwd", "KWD 1.500"}, // three decimals: thousandths of a dinar
		{1005, "bhd", "BHD 1.005"},
		{990, "chf", "CHF 9.90"},
		{1000, "krw", "₩1,000"},
		{500, "isk", "ISK 5.00"}, // two decimals in Stripe's API, whatever the card networks charge
		{-250, "usd", "-$2.50"},
		{1200, "", ""},
	} {
		require.Equal(t, tc.want, shop.FormatAmount(tc.amount, tc.currency), "%d %s", tc.amount, tc.currency)
	}
	require.Equal(t, "$5.00 × 3", shop.FormatUnits(500, 3, "usd"))
	require.Equal(t, "€12.00", shop.FormatUnits(1200, 1, "eur"))
	require.Equal(t, "¥300 × 2", shop.FormatUnits(300, 2, "jpy"))
	require.Equal(t, 0, shop.Decimals("JPY"))
	require.Equal(t, 3, shop.Decimals("kwd"))
	require.Equal(t, 2, shop.Decimals("usd"))
}

func TestShopSettingsTakeWhatTheyClaimAndNothingElse(t *testing.T) {
	t.Parallel()
	name, err := shop.ParseName("  Acme <b>Scripts</b>  ")
	require.NoError(t, err)
	require.Equal(t, "Acme <b>Scripts</b>", name, "markup is escaped where shown, not refused")
	for _, bad := range []string{"", "   ", strings.Repeat("x", shop.MaxNameLength+1), "Acme\nBcc: x@example.com"} {
		_, err := shop.ParseName(bad)
		require.Error(t, err, "%q", bad)
	}

	for _, good := range []string{"https://shop.example.com", "https://shop.example.com/store?ref=keys", "http://localhost:3000", "http://127.0.0.1/"} {
		got, err := shop.ParseURL(good)
		require.NoError(t, err, good)
		require.Equal(t, good, got)
	}
	for _, bad := range []string{"shop.example.com", "http://shop.example.com", "javascript:alert(1)", "https://user:pw@shop.example.com", "ftp://shop.example.com", "https://"} {
		_, err := shop.ParseURL(bad)
		require.Error(t, err, bad)
	}

	logo, err := shop.ParseLogoURL("https://cdn.example.com/logo.png")
	require.NoError(t, err)
	require.Equal(t, "https://cdn.example.com", shop.Identity{LogoURL: logo}.LogoOrigin())
	for _, bad := range []string{"http://localhost/logo.png", "data:image/png;base64,AAAA", "/logo.png", "https://[::1]/logo.png", "https://cdn.example.com;x/logo.png"} {
		_, err := shop.ParseLogoURL(bad)
		require.Error(t, err, bad)
	}

	c, err := shop.ParseSupport("help@shop.example.com")
	require.NoError(t, err)
	require.Equal(t, "mailto:help@shop.example.com", c.Href())
	require.Equal(t, "help@shop.example.com", c.Text())
	c, err = shop.ParseSupport("mailto:help@shop.example.com")
	require.NoError(t, err)
	require.Equal(t, shop.Contact{Email: "help@shop.example.com"}, c)
	c, err = shop.ParseSupport("https://shop.example.com/support")
	require.NoError(t, err)
	require.Equal(t, "https://shop.example.com/support", c.Href())
	for _, bad := range []string{"Help <help@shop.example.com>", "help", "http://shop.example.com/support", "javascript:alert(1)",
		"mailto:help@shop.example.com?bcc=x@example.com", "help@shop.example.com, other@example.com"} {
		_, err := shop.ParseSupport(bad)
		require.Error(t, err, bad)
	}

	color, err := shop.ParseAccentColor("#0B55C4")
	require.NoError(t, err)
	require.Equal(t, "#0b55c4", color)
	for _, bad := range []string{"blue", "#fff", "0b55c4", "#0b55c4;background:url(x)", "rgb(1,2,3)", "#0b55c4ff"} {
		_, err := shop.ParseAccentColor(bad)
		require.Error(t, err, bad)
	}
}
