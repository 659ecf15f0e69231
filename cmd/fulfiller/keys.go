package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/riverqueue/river/rivertype"

	"fulfiller/internal/jobs"
)

const keysUsage = `usage:
  fulfiller keys blacklist|unban|reset-hwid|revoke <user_key> [--reason R] [--wait 2m]
  fulfiller keys reissue <user_key> [--reason R] [--rotate-link] [--wait 2m]
  fulfiller keys set-discord <user_key> <discord_id> [--wait 2m]
(reads the settings of serve; the running service carries the action out)
`

// cmdKeys queues a support action on a key, waits for the service's
// workers to carry it out and prints the outcome.
func cmdKeys(ctx context.Context, args []string, getenv func(string) string, logger *slog.Logger, stdout, stderr io.Writer) error {
	if len(args) == 0 || !slices.Contains(jobs.KeyActions, jobs.KeyAction(args[0])) {
		fmt.Fprint(stderr, keysUsage)
		return errUsage
	}
	action := jobs.KeyAction(args[0])
	fs := flag.NewFlagSet("keys "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	reason := ""
	if action != jobs.ActionSetDiscord && action != jobs.ActionUnbanKey && action != jobs.ActionResetHWID {
		fs.StringVar(&reason, "reason", "", "the ban reason the key's user sees")
	}
	rotateLink := new(bool)
	if action == jobs.ActionReissueKey {
		rotateLink = fs.Bool("rotate-link", false, "also revoke the order's session ID and links, and email the buyer a fresh link with the new key")
	}
	wait := fs.Duration("wait", 2*time.Minute, "how long to wait for the service to carry the action out")
	positional, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return errUsage
	}
	want := 1
	if action == jobs.ActionSetDiscord {
		want = 2
	}
	if len(positional) != want {
		fmt.Fprint(stderr, keysUsage)
		return errUsage
	}
	req := jobs.KeyRequest{Action: action, UserKey: positional[0], Reason: reason, RotateLink: *rotateLink}
	if action == jobs.ActionSetDiscord {
		req.DiscordID = positional[1]
	}
	support, closeDB, err := openSupport(ctx, getenv, logger)
	if err != nil {
		return err
	}
	defer closeDB()
	cmd := "keys " + string(action)
	q, err := support.KeyAction(ctx, jobs.ActorCLI, req)
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
