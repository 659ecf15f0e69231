package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"maps"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/postgres/postgrestest"
)

func TestDevRefusesTwoOfItsListenersOnOnePortBeforeBindingEither(t *testing.T) {
	t.Parallel()
	// Something already holds the port: a check after binding would fail
	// with "address already in use" instead of naming the two settings.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { require.NoError(t, held.Close()) }()
	addr := held.Addr().String()
	_, port, _ := net.SplitHostPort(addr)

	for name, tc := range map[string]struct {
		env        map[string]string
		both, move string
	}{
		"service on the sandbox's default port": {
			env:  map[string]string{"LISTEN_ADDR": "127.0.0.1:8091"},
			both: "LISTEN_ADDR (127.0.0.1:8091, the service) and DEV_LUARMOR_ADDR (127.0.0.1:8091 by default, the Luarmor sandbox) use the same port 8091",
			move: "for example DEV_LUARMOR_ADDR=127.0.0.1:8094",
		},
		"service and sandbox set to one port": {
			env:  map[string]string{"LISTEN_ADDR": addr, "DEV_LUARMOR_ADDR": addr},
			both: fmt.Sprintf("LISTEN_ADDR (%s, the service) and DEV_LUARMOR_ADDR (%s, the Luarmor sandbox) use the same port %s", addr, addr, port),
			move: "for example DEV_LUARMOR_ADDR=127.0.0.1:8094",
		},
		"internal listener on the Stripe stand-in's default port": {
			env:  map[string]string{"ADMIN_ADDR": "127.0.0.1:8092"},
			both: "ADMIN_ADDR (127.0.0.1:8092, the internal listener) and DEV_STRIPE_ADDR (127.0.0.1:8092 by default, the Stripe stand-in) use the same port 8092",
			move: "for example DEV_STRIPE_ADDR=127.0.0.1:8094",
		},
		"service on the mailbox's default port": {
			env:  map[string]string{"LISTEN_ADDR": "127.0.0.1:8093"},
			both: "LISTEN_ADDR (127.0.0.1:8093, the service) and DEV_MAIL_ADDR (127.0.0.1:8093 by default, the mailbox) use the same port 8093",
			move: "for example DEV_MAIL_ADDR=127.0.0.1:8094",
		},
		"mailbox and service set to one port": {
			env:  map[string]string{"LISTEN_ADDR": addr, "DEV_MAIL_ADDR": addr},
			both: fmt.Sprintf("LISTEN_ADDR (%s, the service) and DEV_MAIL_ADDR (%s, the mailbox) use the same port %s", addr, addr, port),
			move: "for example DEV_MAIL_ADDR=127.0.0.1:8094",
		},
		"mailbox on the Stripe stand-in's default port": {
			env:  map[string]string{"DEV_MAIL_ADDR": "127.0.0.1:8092"},
			both: "DEV_STRIPE_ADDR (127.0.0.1:8092 by default, the Stripe stand-in) and DEV_MAIL_ADDR (127.0.0.1:8092, the mailbox) use the same port 8092",
			move: "for example DEV_STRIPE_ADDR=127.0.0.1:8094",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tc.env["DATABASE_URL"] = "postgres://u@127.0.0.1:1/db"
			err := run(context.Background(), []string{"dev"}, envOf(tc.env), io.Discard, io.Discard)
			var ce *config.Error
			require.ErrorAs(t, err, &ce)
			require.ErrorContains(t, err, tc.both)
			require.ErrorContains(t, err, tc.move)
			require.NotContains(t, err.Error(), "address already in use")
		})
	}
}

func TestDevPortCheckCountsOnlyTheListenersItStarts(t *testing.T) {
	t.Parallel()
	// A real Luarmor key starts no sandbox; ADMIN_ADDR=off no internal
	// listener; port 0 is any free port.
	require.NoError(t, refusePortClashes(envOf(map[string]string{
		"LISTEN_ADDR": "127.0.0.1:8091", "LUARMOR_API_KEY": "real-luarmor-key"})))
	require.NoError(t, refusePortClashes(envOf(map[string]string{
		"LISTEN_ADDR": "127.0.0.1:9090", "ADMIN_ADDR": "off"})))
	require.NoError(t, refusePortClashes(envOf(map[string]string{
		"LISTEN_ADDR": "127.0.0.1:0", "ADMIN_ADDR": "127.0.0.1:0", "DEV_LUARMOR_ADDR": "127.0.0.1:0", "DEV_STRIPE_ADDR": "127.0.0.1:0",
		"DEV_MAIL_ADDR": "127.0.0.1:0"})))
	// SMTP_URL sends the mail elsewhere: no mailbox.
	require.NoError(t, refusePortClashes(envOf(map[string]string{
		"LISTEN_ADDR": "127.0.0.1:8093", "SMTP_URL": "smtp://mail.example"})))
	require.NoError(t, refusePortClashes(envOf(nil)), "the defaults do not clash")
}

// devStack is `fulfiller dev` run in-process as `make run` runs it, with
// each of its listeners on a free port of its own.
type devStack struct {
	env    map[string]string // what dev was started with
	banner string
	stop   func() // stops dev and checks it stopped cleanly; idempotent
}

// devAddrSettings are the addresses dev binds, each given a free port.
var devAddrSettings = []string{"LISTEN_ADDR", "ADMIN_ADDR", "DEV_LUARMOR_ADDR", "DEV_STRIPE_ADDR", "DEV_MAIL_ADDR"}

// startDev runs dev with env, filling in a fresh database, the example
// catalog and a free port for every address env leaves unset, and returns
// once the service answers. It stops when the test ends.
func startDev(t *testing.T, env map[string]string) *devStack {
	t.Helper()
	full := map[string]string{
		"CATALOG_FILE": "../../catalog.example.yaml",
		"LOG_LEVEL":    "error",
	}
	for _, name := range devAddrSettings {
		full[name] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	}
	maps.Copy(full, env)
	if full["DATABASE_URL"] == "" {
		full["DATABASE_URL"] = postgrestest.NewURL(t)
	}

	ctx, cancel := context.WithCancel(context.Background())
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev"}, envOf(full), w, io.Discard)
		_ = w.Close()
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err, "dev stops cleanly when its context ends")
			case <-time.After(20 * time.Second):
				t.Error("dev did not stop")
			}
		})
	}
	t.Cleanup(stop)

	// The banner ends with the simulate command to try, just before the
	// service listens.
	var banner strings.Builder
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		banner.WriteString(lines.Text() + "\n")
		if strings.HasPrefix(lines.Text(), "  go run ./cmd/fulfiller simulate ") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	require.Contains(t, banner.String(), "Try a purchase", "dev stopped before its banner was complete:\n%s", banner.String())
	require.Eventually(t, func() bool {
		_, err := getOrder(ctx, "http://"+full["LISTEN_ADDR"]+"/v1/orders/cs_test_none")
		return err != nil && strings.Contains(err.Error(), "answered")
	}, 20*time.Second, 50*time.Millisecond, "the service did not start listening")
	return &devStack{env: full, banner: banner.String(), stop: stop}
}

// terminal is the environment of another terminal's commands that reach
// this dev stack: simulate's defaults (localhost:8080, the stand-in on
// 127.0.0.1:8092) moved to the ports in use.
func (d *devStack) terminal() func(string) string {
	return envOf(map[string]string{"LISTEN_ADDR": d.env["LISTEN_ADDR"], "STRIPE_API_BASE": "http://" + d.env["DEV_STRIPE_ADDR"]})
}

func TestDevMailboxShowsTheKeysEmailAndTheFindMyKeysEmail(t *testing.T) {
	t.Parallel()
	d := startDev(t, nil)
	mailbox := "http://" + d.env["DEV_MAIL_ADDR"]
	require.Contains(t, d.banner, "  mail             "+mailbox+"   (the mailbox: every email the service sends, the newest 200)")

	// A purchase: its keys email goes through SMTP to the mailbox.
	var out strings.Builder
	require.NoError(t, run(t.Context(), []string{"simulate", "checkout", "--price", "price_dev_monthly", "--quantity", "2",
		"--email", "mailbox-buyer@example.com"}, d.terminal(), &out, io.Discard))
	keys := printedKeys(t, out.String())
	require.Len(t, keys, 2, out.String())

	id := waitForMail(t, mailbox, "mailbox-buyer@example.com", "Your license keys from "+devShop["SHOP_NAME"])
	status, page := fetch(t, http.MethodGet, mailbox+"/messages/"+id, "", "")
	require.Equal(t, http.StatusOK, status, page)
	for _, k := range keys {
		require.Contains(t, page, k, "the message page shows the email's keys")
	}
	require.Contains(t, page, `<iframe sandbox src="/messages/`+id+`/html"`, "the HTML part is shown in a sandboxed frame")

	// The HTML part is sandboxed even when opened on its own.
	resp, err := http.Get(mailbox + "/messages/" + id + "/html")
	require.NoError(t, err)
	htmlPart, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	csp := resp.Header.Get("Content-Security-Policy")
	require.True(t, strings.HasPrefix(csp, "sandbox;"), "the HTML part's policy sandboxes it: %q", csp)
	require.Contains(t, csp, "default-src 'none'", "and lets it load nothing, scripts included")
	require.Contains(t, string(htmlPart), keys[0])

	// The email's link opens the order page on the service.
	orderLink := linkIn(t, page, "http://"+d.env["LISTEN_ADDR"]+"/orders/")
	status, orderPage := fetch(t, http.MethodGet, orderLink, "", "")
	require.Equal(t, http.StatusOK, status, orderPage)
	for _, k := range keys {
		require.Contains(t, orderPage, k, "the emailed link opens the order")
	}

	// Find my keys: the buyer asks for a link by email.
	status, body := fetch(t, http.MethodPost, "http://"+d.env["LISTEN_ADDR"]+"/v1/key-lookup", "application/json",
		`{"email":"mailbox-buyer@example.com"}`)
	require.Equal(t, http.StatusAccepted, status, body)
	id = waitForMail(t, mailbox, "mailbox-buyer@example.com", "Your link to your license keys")
	status, page = fetch(t, http.MethodGet, mailbox+"/messages/"+id, "", "")
	require.Equal(t, http.StatusOK, status, page)
	_, token, ok := strings.Cut(linkIn(t, page, "http://"+d.env["LISTEN_ADDR"]+"/my-keys#token="), "#token=")
	require.True(t, ok)
	status, body = fetch(t, http.MethodPost, "http://"+d.env["LISTEN_ADDR"]+"/v1/my-keys", "application/json",
		`{"token":"`+token+`"}`)
	require.Equal(t, http.StatusOK, status, body)
	var mine httpapi.MyKeysJSON
	require.NoError(t, json.Unmarshal([]byte(body), &mine))
	require.Len(t, mine.Orders, 1)
	var listed []string
	for _, k := range mine.Orders[0].Keys {
		listed = append(listed, k.UserKey)
	}
	require.ElementsMatch(t, keys, listed, "the emailed link lists the buyer's order and its keys")
}

func TestDevMailboxStaysOnLoopback(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"0.0.0.0:8093", ":8093", "192.0.2.1:8093", "8093"} {
		err := run(t.Context(), []string{"dev"}, envOf(map[string]string{
			"DATABASE_URL": "postgres://u@127.0.0.1:1/db", "DEV_MAIL_ADDR": addr}), io.Discard, io.Discard)
		var ce *config.Error
		require.ErrorAs(t, err, &ce, addr)
		require.Equal(t, "DEV_MAIL_ADDR", ce.Name, addr)
	}
	for _, addr := range []string{"127.0.0.1:8093", "localhost:8093", "[::1]:8093", "127.0.0.1:0"} {
		require.NoError(t, refuseMailboxOffLoopback(envOf(map[string]string{"DEV_MAIL_ADDR": addr})), addr)
	}
	require.NoError(t, refuseMailboxOffLoopback(envOf(map[string]string{"DEV_MAIL_ADDR": "0.0.0.0:8093", "SMTP_URL": "smtp://mail.example"})),
		"with SMTP_URL set there is no mailbox")
}

// printedKeys are the keys simulate printed.
func printedKeys(t *testing.T, out string) []string {
	t.Helper()
	var keys []string
	for _, m := range regexp.MustCompile(`(?m)^  key (\S+)`).FindAllStringSubmatch(out, -1) {
		keys = append(keys, m[1])
	}
	return keys
}

// mailboxRow is a message's row on the mailbox's list: recipients, the
// message's number and its subject.
var mailboxRow = regexp.MustCompile(`<td>([^<]*)</td>\s*<td><a href="/messages/(\d+)">([^<]*)</a></td>`)

// waitForMail waits for a message to `to` with subject on the mailbox's
// list and returns its number.
func waitForMail(t *testing.T, mailbox, to, subject string) string {
	t.Helper()
	var id string
	require.Eventually(t, func() bool {
		_, list, err := request(context.Background(), http.MethodGet, mailbox+"/", "", "")
		if err != nil {
			return false
		}
		for _, m := range mailboxRow.FindAllStringSubmatch(list, -1) {
			if html.UnescapeString(m[1]) == to && html.UnescapeString(m[3]) == subject {
				id = m[2]
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "no %q to %s in the mailbox", subject, to)
	return id
}

// linkIn is the first link of a page that starts with prefix.
func linkIn(t *testing.T, page, prefix string) string {
	t.Helper()
	for _, m := range regexp.MustCompile(`href="([^"]+)"`).FindAllStringSubmatch(page, -1) {
		if link := html.UnescapeString(m[1]); strings.HasPrefix(link, prefix) {
			return link
		}
	}
	require.Failf(t, "no link", "no link starting with %s in:\n%s", prefix, page)
	return ""
}

// fetch makes one request and returns the answer's status and body.
func fetch(t *testing.T, method, url, contentType, body string) (int, string) {
	t.Helper()
	status, answer, err := request(t.Context(), method, url, contentType, body)
	require.NoError(t, err)
	return status, answer
}

// request is fetch for callers that must not stop the test (a condition
// polled by require.Eventually runs on a goroutine of its own).
func request(ctx context.Context, method, url, contentType, body string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestDevRefusesRealKeysWithoutItsOwnWebhookSecret(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]map[string]string{
		"real stripe key":                  {"STRIPE_API_KEY": "sk_live_real"},
		"real luarmor key":                 {"LUARMOR_API_KEY": "real-luarmor-key"},
		"real key, public secret explicit": {"LUARMOR_API_KEY": "real-luarmor-key", "STRIPE_WEBHOOK_SECRET": devWebhookSecret},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// Port 1 refuses connections: a refusal must come before any
			// connection, stand-in or listener.
			env["DATABASE_URL"] = "postgres://u@127.0.0.1:1/db"
			err := run(context.Background(), []string{"dev"}, envOf(env), io.Discard, io.Discard)
			var ce *config.Error
			require.ErrorAs(t, err, &ce)
			require.Equal(t, "STRIPE_WEBHOOK_SECRET", ce.Name)
			require.NotContains(t, err.Error(), "sk_live_real")
			require.NotContains(t, err.Error(), "real-luarmor-key")
		})
	}
	// With the stand-ins' own keys the public secret is fine.
	require.NoError(t, refuseRealKeysWithThePublicSecret(envOf(map[string]string{
		"STRIPE_API_KEY": devStripeKey, "LUARMOR_API_KEY": devLuarmorKey})))
	require.NoError(t, refuseRealKeysWithThePublicSecret(envOf(map[string]string{
		"STRIPE_API_KEY": "sk_live_real", "STRIPE_WEBHOOK_SECRET": testWebhookSecret})))
}

func TestDevListensOnLoopbackByDefault(t *testing.T) {
	t.Parallel()
	env := map[string]string{}
	applyDevDefaults(env, envOf(nil))
	require.Equal(t, "127.0.0.1:8080", env["LISTEN_ADDR"])
	require.Equal(t, devWebhookSecret, env["STRIPE_WEBHOOK_SECRET"])

	env = map[string]string{}
	applyDevDefaults(env, envOf(map[string]string{"LISTEN_ADDR": ":9000"}))
	require.NotContains(t, env, "LISTEN_ADDR", "an explicit LISTEN_ADDR stands")
}

func TestDevBannerPrintsTheSimulateCommandForItsPortsAndItWorks(t *testing.T) {
	t.Parallel()
	d := startDev(t, nil)
	service, stripeAddr := d.env["LISTEN_ADDR"], d.env["DEV_STRIPE_ADDR"]
	lines := strings.Split(strings.TrimRight(d.banner, "\n"), "\n")
	command, ok := strings.CutPrefix(lines[len(lines)-1], "  go run ./cmd/fulfiller ")
	require.True(t, ok, "no simulate command at the end of the banner:\n%s", d.banner)
	require.Contains(t, d.banner, fmt.Sprintf("order page       http://%s/orders/{checkout_session_id}", service))
	require.Equal(t, fmt.Sprintf("simulate checkout --price price_dev_monthly --quantity 2 --url http://%s --stripe http://%s",
		service, stripeAddr), command)

	// The command as printed, from a terminal without the service's settings.
	var got strings.Builder
	require.NoError(t, run(t.Context(), strings.Fields(command), envOf(nil), &got, io.Discard))
	require.Contains(t, got.String(), "is fulfilled")
	require.Equal(t, 2, strings.Count(got.String(), "  key "), got.String())
}

func TestDevBannerLeavesOutTheFlagsSimulateDefaultsTo(t *testing.T) {
	t.Parallel()
	dev := config.Config{ListenAddr: devListenAddr, WebhookSecrets: []string{devWebhookSecret}}
	standIn := map[string]string{"STRIPE_API_BASE": "http://" + devStripeAddr}
	require.Equal(t, "Try a purchase from another terminal:\n  go run ./cmd/fulfiller simulate checkout --price price_dev_monthly --quantity 2\n",
		tryNote(dev, standIn))

	dev.ListenAddr = ":8080"
	require.NotContains(t, tryNote(dev, standIn), "--url", "localhost:8080 reaches :8080")

	dev.WebhookSecrets = []string{testWebhookSecret}
	require.Contains(t, tryNote(dev, standIn), `--secret "$STRIPE_WEBHOOK_SECRET"`)

	require.Contains(t, tryNote(dev, map[string]string{}), "simulate needs the Stripe stand-in: it runs when STRIPE_API_KEY is unset")
}
