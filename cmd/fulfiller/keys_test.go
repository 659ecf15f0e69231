package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A license key typed as an argument is in ps and in the shell history
// before the command can do anything: it is refused, with how to pass it
// instead, and never repeated.
func TestKeyOnTheCommandLineIsRefusedWithoutRepeatingIt(t *testing.T) {
	t.Parallel()
	const key = "kQzR7bXwYtPnLm2sVcHdJf8gAe4uNo1i"
	for _, args := range [][]string{
		{"keys", "blacklist", key, "--reason", "Fraud ring"},
		{"keys", "unban", key},
		{"keys", "reset-hwid", key},
		{"keys", "revoke", key},
		{"keys", "reissue", key},
		{"keys", "set-discord", key, "123456789012345678"},
		{"orders", "find", "--key", key},
		{"orders", "find", "--key=" + key},
	} {
		var out, errOut strings.Builder
		err := runWith(context.Background(), args, envOf(nil), strings.NewReader(""), &out, &errOut)
		require.Error(t, err, "%v", args[:2])
		require.Contains(t, err.Error(), "shows in ps and in the shell history")
		require.Contains(t, err.Error(), "--key-file PATH")
		require.Contains(t, err.Error(), " -`", "names the stdin form")
		for _, text := range []string{err.Error(), out.String(), errOut.String()} {
			require.NotContains(t, text, key, "%v", args[:2])
		}
	}
}

func TestKeyArgumentsThatAreNotAKeyAreUsageErrors(t *testing.T) {
	t.Parallel()
	keyFile := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(keyFile, []byte("kQzR7bXwYtPnLm2sVcHdJf8gAe4uNo1i\n"), 0o600))
	for _, args := range [][]string{
		{"keys", "blacklist"},                                   // no key at all
		{"keys", "set-discord", "-"},                            // no Discord ID
		{"keys", "revoke", "-", "--key-file", keyFile},          // two sources
		{"orders", "find", "--key", "-", "--key-file", keyFile}, // two sources
	} {
		err := runWith(context.Background(), args, envOf(nil), strings.NewReader(""), &strings.Builder{}, &strings.Builder{})
		require.ErrorIs(t, err, errUsage, "%v", args)
	}
}

func TestReadKeyTakesTheFirstLineTrimmed(t *testing.T) {
	t.Parallel()
	got, err := readKey("keys revoke", "", strings.NewReader("  kQzR7bXwYtPnLm2sVcHdJf8gAe4uNo1i \r\nignored\n"), &strings.Builder{})
	require.NoError(t, err)
	require.Equal(t, "kQzR7bXwYtPnLm2sVcHdJf8gAe4uNo1i", got)

	got, err = readKey("keys revoke", "", strings.NewReader("no-newline-at-end"), &strings.Builder{})
	require.NoError(t, err)
	require.Equal(t, "no-newline-at-end", got)

	_, err = readKey("keys revoke", "", strings.NewReader("\nkey on the second line\n"), &strings.Builder{})
	require.ErrorContains(t, err, "keys revoke: no license key on the first line of stdin")

	_, err = readKey("keys revoke", "", strings.NewReader(strings.Repeat("x", maxKeyLine+10)), &strings.Builder{})
	require.ErrorContains(t, err, "longer than 4096 bytes")

	missing := filepath.Join(t.TempDir(), "absent")
	_, err = readKey("keys revoke", missing, strings.NewReader(""), &strings.Builder{})
	require.ErrorContains(t, err, "keys revoke: reading the key file")
	require.ErrorIs(t, err, os.ErrNotExist)
}

// Through the running service: the key from a file or from stdin reaches
// the action, as it did from the command line before.
func TestKeysAndOrdersFindTakeTheKeyFromAFileOrStdin(t *testing.T) {
	t.Parallel()
	s := startSupport(t)
	sess, key := s.buy(t)
	keyFile := filepath.Join(t.TempDir(), "key.txt")
	require.NoError(t, os.WriteFile(keyFile, []byte(key+"\n"), 0o600))

	out, err := s.cli(t, "orders", "find", "--key-file", keyFile)
	require.NoError(t, err)
	require.Contains(t, out, sess.ID)

	out, err = s.cli(t, "keys", "blacklist", "--key-file", keyFile, "--reason", "Chargeback ring")
	require.NoError(t, err, out)
	require.Contains(t, out, "done: the key is blacklisted")
	require.Equal(t, "Chargeback ring", s.user(t, key).BanReason)

	out, err = s.cli(t, "keys", "set-discord", "--key-file", keyFile, "123456789012345678")
	require.NoError(t, err, out)
	require.Equal(t, "123456789012345678", s.user(t, key).DiscordID)

	out, err = s.cliKey(t, key, "keys", "unban", "-")
	require.NoError(t, err, out)
	require.Contains(t, out, "done: the key is active")
	require.Equal(t, 0, s.user(t, key).Banned)

	_, err = s.cliKey(t, "", "keys", "unban", "-")
	require.ErrorContains(t, err, "no license key on the first line of stdin")
}

func TestKeysCommandsActThroughTheRunningService(t *testing.T) {
	t.Parallel()
	s := startSupport(t)
	_, key := s.buy(t)

	for range 2 {
		out, err := s.cliKey(t, key, "keys", "blacklist", "-", "--reason", "Fraud ring")
		require.NoError(t, err, out)
		require.Contains(t, out, "done: the key is blacklisted")
		require.Equal(t, 1, s.user(t, key).Banned)
		require.Equal(t, "Fraud ring", s.user(t, key).BanReason)
	}
	out, err := s.cliKey(t, key, "keys", "unban", "-")
	require.NoError(t, err, out)
	require.Contains(t, out, "done: the key is active")
	require.Equal(t, 0, s.user(t, key).Banned)

	require.NoError(t, s.Luarmor.Execute(supportProject, key, "pc-1"))
	out, err = s.cliKey(t, key, "keys", "reset-hwid", "-")
	require.NoError(t, err, out)
	require.Empty(t, s.user(t, key).Identifier)

	out, err = s.cliKey(t, key, "keys", "set-discord", "-", "123456789012345678")
	require.NoError(t, err, out)
	require.Equal(t, "123456789012345678", s.user(t, key).DiscordID)
	_, err = s.cliKey(t, key, "keys", "set-discord", "-", "name#1234")
	require.ErrorContains(t, err, "snowflake")

	out, err = s.cliKey(t, key, "keys", "reissue", "-")
	require.NoError(t, err, out)
	require.Contains(t, out, "new key: ")
	fresh := strings.Fields(strings.SplitN(out, "new key: ", 2)[1])[0]
	require.NotEqual(t, key, fresh)
	require.Equal(t, 1, s.user(t, key).Banned, "the old key is revoked")
	require.Equal(t, 0, s.user(t, fresh).Banned)
	out, err = s.cliKey(t, key, "keys", "reissue", "-")
	require.NoError(t, err, out)
	require.Contains(t, out, "new key: "+fresh, "a second run reports the same reissue")
	require.Len(t, s.Luarmor.Users(supportProject), 2)

	out, err = s.cliKey(t, fresh, "keys", "revoke", "-")
	require.NoError(t, err, out)
	require.Equal(t, 1, s.user(t, fresh).Banned)

	_, err = s.cliKey(t, "NoSuchKey0123456789", "keys", "blacklist", "-")
	require.ErrorContains(t, err, "no order holds this key")
	_, err = s.cliKey(t, key, "keys", "frobnicate", "-")
	require.ErrorIs(t, err, errUsage)
}

func TestReissueCommandRotatesTheLinkWhenAsked(t *testing.T) {
	t.Parallel()
	s := startSupport(t)
	sess, key := s.buy(t)

	_, err := s.cliKey(t, key, "keys", "blacklist", "-", "--rotate-link")
	require.ErrorIs(t, err, errUsage, "rotation goes with reissue only")
	require.Equal(t, http.StatusOK, s.orderAnswer(t, sess.ID))

	out, err := s.cliKey(t, key, "keys", "reissue", "-", "--rotate-link")
	require.NoError(t, err, out)
	require.Contains(t, out, "earlier links no longer open it (access generation 2)")
	require.Contains(t, out, "new key: ")
	require.Equal(t, http.StatusNotFound, s.orderAnswer(t, sess.ID))
}
