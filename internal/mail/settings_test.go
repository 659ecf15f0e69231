package mail_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/mail"
)

func TestParseSMTPURL(t *testing.T) {
	s, err := mail.ParseSMTPURL("smtp://user:p%40ss@mail.example:2525")
	require.NoError(t, err)
	require.Equal(t, mail.SMTPServer{Host: "mail.example", Port: 2525, Username: "user", Password: "p@ss"}, s)
	require.Equal(t, "smtp://mail.example:2525", s.String(), "no credentials in what is logged")

	s, err = mail.ParseSMTPURL("smtps://user:pw@mail.example")
	require.NoError(t, err)
	require.Equal(t, 465, s.Port)
	require.True(t, s.ImplicitTLS)

	s, err = mail.ParseSMTPURL("smtp://relay.internal")
	require.NoError(t, err)
	require.Equal(t, 587, s.Port)
	require.Empty(t, s.Username)
}

func TestParseSMTPURLErrorsNeverHoldThePassword(t *testing.T) {
	const secret = "Sup3rSecretPw"
	for _, raw := range []string{
		"http://user:" + secret + "@mail.example",
		"smtp://user:" + secret + "@mail.example:99999",
		"smtp://user:" + secret + "@mail.example:25/path",
		"smtp://user:" + secret + "@mail.example:25?x=1",
		"smtp://user:" + secret + "@:25",
		"smtp://:" + secret + "@mail.example",
		"smtp://user:" + secret + "%zz@mail.example", // a bad escape: url.Parse quotes the URL
		"smtp://user:" + secret + "@mail.example:port",
	} {
		_, err := mail.ParseSMTPURL(raw)
		require.Error(t, err, raw)
		require.NotContains(t, err.Error(), secret, raw)
	}
}

func TestParseFromAndPublicBaseURL(t *testing.T) {
	from, err := mail.ParseFrom("Shop <keys@shop.example>")
	require.NoError(t, err)
	require.Equal(t, `"Shop" <keys@shop.example>`, from)
	_, err = mail.ParseFrom("not an address")
	require.Error(t, err)

	base, err := mail.ParsePublicBaseURL("https://shop.example/store/")
	require.NoError(t, err)
	require.Equal(t, "https://shop.example/store", base)
	for _, local := range []string{"http://localhost:8080", "http://127.0.0.1:8080", "http://[::1]:8080"} {
		_, err := mail.ParsePublicBaseURL(local)
		require.NoError(t, err, "plain http for trying it locally: %s", local)
	}
	for _, bad := range []string{"shop.example", "ftp://shop.example", "https://u:p@shop.example", "https://shop.example/?a=1", "http://shop.example"} {
		_, err := mail.ParsePublicBaseURL(bad)
		require.Error(t, err, bad)
	}
}
