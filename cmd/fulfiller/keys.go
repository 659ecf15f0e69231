package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/riverqueue/river/rivertype"

	"fulfiller/internal/jobs"
)

const keysUsage = `usage:
  fulfiller keys blacklist|unban|reset-hwid|revoke - [--reason R] [--wait 2m]
  fulfiller keys reissue - [--reason R] [--rotate-link] [--wait 2m]
  fulfiller keys set-discord - <discord_id> [--reason R] [--wait 2m]
  (--reason is kept in the audit log; for blacklist, revoke and reissue the
  key's user sees it as the ban reason)
  (- reads the license key from stdin; --key-file PATH reads it from a
  file's first line instead of -. A key on the command line is refused:
  ps and the shell history would show it.)
(reads the settings of serve; the running service carries the action out)
`

// cmdKeys queues a support action on a key, waits for the service's
// workers to carry it out and prints the outcome. The key comes from stdin
// or a file, never from the command line.
func cmdKeys(ctx context.Context, args []string, getenv func(string) string, logger *slog.Logger, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || !slices.Contains(jobs.KeyActions, jobs.KeyAction(args[0])) {
		fmt.Fprint(stderr, keysUsage)
		return errUsage
	}
	action := jobs.KeyAction(args[0])
	cmd := "keys " + string(action)
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	reasonUse := "why, for the audit log"
	if action == jobs.ActionBlacklistKey || action == jobs.ActionRevokeKey || action == jobs.ActionReissueKey {
		reasonUse = "why, for the audit log; also the ban reason the key's user sees"
	}
	reason := fs.String("reason", "", reasonUse)
	rotateLink := new(bool)
	if action == jobs.ActionReissueKey {
		rotateLink = fs.Bool("rotate-link", false, "also revoke the order's session ID and links, and email the buyer a fresh link with the new key")
	}
	wait := fs.Duration("wait", 2*time.Minute, "how long to wait for the service to carry the action out")
	keyFile := fs.String("key-file", "", "read the license key from this file's first line (instead of - for stdin)")
	positional, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return errUsage
	}
	// The key's place: the first positional argument ("-"), unless
	// --key-file names it.
	want := 1
	if action == jobs.ActionSetDiscord {
		want = 2
	}
	if *keyFile == "" {
		if len(positional) == 0 {
			fmt.Fprint(stderr, keysUsage)
			return errUsage
		}
		if positional[0] != "-" {
			return errKeyOnCommandLine(cmd, "fulfiller "+cmd+" -")
		}
		positional = positional[1:]
	}
	if len(positional) != want-1 {
		fmt.Fprint(stderr, keysUsage)
		return errUsage
	}
	userKey, err := readKey(cmd, *keyFile, stdin, stderr)
	if err != nil {
		return err
	}
	req := jobs.KeyRequest{Action: action, UserKey: userKey, Reason: *reason, RotateLink: *rotateLink}
	if action == jobs.ActionSetDiscord {
		req.DiscordID = positional[0]
	}
	support, closeDB, err := openSupport(ctx, getenv, logger)
	if err != nil {
		return err
	}
	defer closeDB()
	q, err := support.KeyAction(ctx, jobs.CLIActor(), req)
	if err != nil {
		return supportError(cmd, err)
	}
	fmt.Fprintf(stdout, "%s of the key of order %s queued (job %d); waiting for the service\n", action, q.OrderRef, q.JobID)
	if rot := q.Rotation; rot != nil {
		fmt.Fprintf(stdout, "the order's Checkout Session ID and earlier links no longer open it (access generation %d)\n", rot.Generation)
		switch {
		case rot.EmailAfterReissue:
			fmt.Fprintln(stdout, "the buyer is emailed a fresh link once the new key is delivered")
		case rot.EmailDelivery != 0:
			fmt.Fprintf(stdout, "the buyer is emailed a fresh link (keys email delivery %d)\n", rot.EmailDelivery)
		default:
			fmt.Fprintf(stdout, "no email was queued: %s\n", rot.NoEmail)
		}
	}
	waitCtx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	out, err := support.Wait(waitCtx, q)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if out.State != rivertype.JobStateCompleted {
		return fmt.Errorf("%s: not done (%s): %s", cmd, out.State, out.Error)
	}
	fmt.Fprintf(stdout, "done: the key is %s\n", out.Key.Status)
	if out.NewKey != nil {
		fmt.Fprintf(stdout, "new key: %s (%s, expires %s)\n", out.NewKey.UserKey, out.NewKey.Status, unixTime(out.NewKey.AuthExpire))
	}
	return nil
}

// errKeyOnCommandLine refuses a license key given as an argument, without
// repeating it: the command line is visible to every user of the machine
// (ps) and kept in the shell history.
func errKeyOnCommandLine(cmd, stdinForm string) error {
	return fmt.Errorf("%s: a license key on the command line shows in ps and in the shell history, so it is not used: "+
		"pass it on stdin (`%s`, then paste it, or pipe it in: `%s < key.txt`) or in a file (--key-file PATH, first line)",
		cmd, stdinForm, stdinForm)
}

// maxKeyLine bounds what is read for a key: a key is a few dozen
// characters, and a wrong file or pipe must not be read whole.
const maxKeyLine = 4 << 10

// readKey reads a license key: the first line of the file at path, or of
// stdin when path is "". Surrounding spaces and the line end are dropped.
// An interactive stdin gets a prompt on stderr.
func readKey(cmd, path string, stdin io.Reader, stderr io.Writer) (string, error) {
	source := "stdin"
	in := stdin
	if path != "" {
		f, err := os.Open(path) //nolint:gosec // G304: the operator names the key file on the command line
		if err != nil {
			return "", fmt.Errorf("%s: reading the key file: %w", cmd, err)
		}
		defer func() { _ = f.Close() }() // read only
		source, in = path, f
	} else if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(stderr, "license key: ")
		}
	}
	line, err := bufio.NewReaderSize(io.LimitReader(in, maxKeyLine), maxKeyLine).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("%s: reading the key from %s: %w", cmd, source, err)
	}
	if !strings.HasSuffix(line, "\n") && len(line) >= maxKeyLine {
		return "", fmt.Errorf("%s: the first line of %s is longer than %d bytes: that is not a license key", cmd, source, maxKeyLine)
	}
	key := strings.TrimSpace(line)
	if key == "" {
		return "", fmt.Errorf("%s: no license key on the first line of %s", cmd, source)
	}
	return key, nil
}
