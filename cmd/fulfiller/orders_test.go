package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// orderAnswer is the HTTP status of the order API for a credential.
func (b *supportBundle) orderAnswer(t *testing.T, id string) int {
	t.Helper()
	resp, err := http.Get(b.main.URL() + "/v1/orders/" + id)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func TestRotateLinkCommandRevokesTheSessionIDAndSaysWhyNoEmailWent(t *testing.T) {
	t.Parallel()
	b := setupSupport(t)
	id := "cs_test_rotatelinkcommand01"
	b.buy(t, id)
	require.Equal(t, http.StatusOK, b.orderAnswer(t, id))

	_, err := b.cli(t, "orders", "rotate-link")
	require.ErrorIs(t, err, errUsage)
	_, err = b.cli(t, "orders", "rotate-link", id, "--reason", "two\nlines")
	require.ErrorContains(t, err, "one line")

	out, err := b.cli(t, "orders", "rotate-link", id, "--reason", "posted on a forum")
	require.NoError(t, err)
	require.Contains(t, out, "no longer open it (access generation 2)")
	require.Contains(t, out, "no email was queued: mail is off")
	require.NotContains(t, out, id, "the terminal names the order by its reference")
	require.Equal(t, http.StatusNotFound, b.orderAnswer(t, id))
}

func TestReissueCommandRotatesTheLinkWhenAsked(t *testing.T) {
	t.Parallel()
	b := setupSupport(t)
	id := "cs_test_reissuerotates0001"
	key := b.buy(t, id)

	_, err := b.cliKey(t, key, "keys", "blacklist", "-", "--rotate-link")
	require.ErrorIs(t, err, errUsage, "rotation goes with reissue only")
	require.Equal(t, http.StatusOK, b.orderAnswer(t, id))

	out, err := b.cliKey(t, key, "keys", "reissue", "-", "--rotate-link")
	require.NoError(t, err, out)
	require.Contains(t, out, "earlier links no longer open it (access generation 2)")
	require.Contains(t, out, "new key: ")
	require.Equal(t, http.StatusNotFound, b.orderAnswer(t, id))
}
