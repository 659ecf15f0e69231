package mail_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/mail"
)

func TestKeyLookupEmailCarriesTheLinkInBothPartsAndEscapesTheAddress(t *testing.T) {
	t.Parallel()
	expiresAt := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	e := mail.NewKeyLookupEmail(`"<script>"@example.com`, "https://shop.example", "AbC-_123", "id@shop.example", expiresAt)
	require.Equal(t, "https://shop.example/my-keys#token=AbC-_123", e.LinkURL)

	text, html, err := e.Render()
	require.NoError(t, err)
	for _, part := range []string{text, html} {
		require.Contains(t, part, "https://shop.example/my-keys#token=AbC-_123")
		require.Contains(t, part, "1 March 2026 12:30 UTC")
	}
	require.Contains(t, text, `"<script>"@example.com`)
	require.NotContains(t, html, "<script>")
	require.Contains(t, html, "&lt;script&gt;")
}
