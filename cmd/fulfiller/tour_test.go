package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/httpapi"
	"fulfiller/internal/logging"
)

// The README's five-minute tour is run as a reader runs it: every command
// of its code blocks, every curl and every URL it says to open, in order,
// against `fulfiller dev` started as `make run` starts it, checking that
// each does what the README says. A command the test does not know how to
// run fails it, so the tour cannot drift from what the service does.

// tourStep is one thing the tour asks the reader to do.
type tourStep struct {
	line int    // where it is in README.md
	text string // the command line, or the URL to open
	open bool   // a URL to open in a browser, not a command
}

// tourSection is the README's tour: from its heading to the next one.
const tourSection = "## A five-minute tour"

// tourSteps reads the tour's steps out of the README: each line of its code
// blocks (a URL in a comment line is a page to open), and in its prose
// each inline code span that is a URL (a page to open) or a curl or go run
// command.
func tourSteps(t *testing.T, readme string) []tourStep {
	t.Helper()
	lines := strings.Split(readme, "\n")
	start := -1
	for i, line := range lines {
		if line == tourSection {
			start = i
			break
		}
	}
	require.NotEqual(t, -1, start, "README.md has no %q section", tourSection)

	var steps []tourStep
	var paragraph []string
	paragraphLine := 0
	flush := func() {
		for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(strings.Join(paragraph, " "), -1) {
			span := m[1]
			switch {
			case strings.HasPrefix(span, "http://"), strings.HasPrefix(span, "https://"):
				steps = append(steps, tourStep{line: paragraphLine, text: span, open: true})
			case strings.HasPrefix(span, "curl "), strings.HasPrefix(span, "go run "):
				steps = append(steps, tourStep{line: paragraphLine, text: span})
			}
		}
		paragraph = nil
	}
	inFence := false
	continued := ""
	for i := start + 1; i < len(lines); i++ {
		line, lineNo := lines[i], i+1
		if !inFence && strings.HasPrefix(line, "## ") {
			break
		}
		if strings.HasPrefix(line, "```") {
			flush()
			inFence = !inFence
			continue
		}
		trimmed := strings.TrimSpace(line)
		if inFence {
			if cut, ok := strings.CutSuffix(trimmed, "\\"); ok {
				continued += strings.TrimSpace(cut) + " "
				continue
			}
			trimmed, continued = continued+trimmed, ""
			switch {
			case trimmed == "":
			case strings.HasPrefix(trimmed, "#"):
				for _, u := range regexp.MustCompile(`https?://\S+`).FindAllString(trimmed, -1) {
					steps = append(steps, tourStep{line: lineNo, text: u, open: true})
				}
			default:
				steps = append(steps, tourStep{line: lineNo, text: trimmed})
			}
			continue
		}
		if trimmed == "" {
			flush()
			continue
		}
		if paragraph == nil {
			paragraphLine = lineNo
		}
		paragraph = append(paragraph, trimmed)
	}
	flush()
	return steps
}

// tour is the reader's state while following the tour.
type tour struct {
	t   *testing.T
	dev *devStack
	// exported holds what the tour's export lines set; make run starts
	// dev with it.
	exported map[string]string
	// session is the Checkout Session the last simulate checkout printed,
	// what the tour's cs_test_... stands for; keys holds each session's
	// keys as printed.
	session string
	keys    map[string][]string
	kinds   map[string]int // steps run, by kind
}

func TestTheREADMETourRuns(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	steps := tourSteps(t, string(readme))

	// With `make run` running, as the tour begins.
	tr := &tour{t: t, dev: startDev(t, nil), exported: map[string]string{}, keys: map[string][]string{}, kinds: map[string]int{}}
	for _, step := range steps {
		tr.run(step)
	}
	// Guards the parser: a tour the test no longer reads must not pass as
	// a tour that runs.
	for _, kind := range []string{"simulate checkout", "simulate lifecycle", "curl", "open", "export", "make run"} {
		require.NotZero(t, tr.kinds[kind], "the tour ran no %s step: did README.md's tour or its code blocks change shape?", kind)
	}
}

func (tr *tour) run(step tourStep) {
	t := tr.t
	t.Helper()
	where := fmt.Sprintf("README.md:%d", step.line)
	text := step.text
	if strings.Contains(text, "cs_test_...") {
		require.NotEmpty(t, tr.session, "%s: %q needs a session before any simulate checkout printed one", where, text)
		text = strings.ReplaceAll(text, "cs_test_...", tr.session)
	}
	if step.open {
		tr.open(where, text)
		return
	}
	words, comment, err := shellWords(text, tr.variable, commandOutput)
	require.NoError(t, err, "%s: %s", where, text)
	switch {
	case len(words) >= 3 && words[0] == "go" && words[1] == "run" && words[2] == "./cmd/fulfiller":
		tr.fulfiller(where, words[3:], comment)
	case words[0] == "curl":
		tr.curl(where, words[1:])
	case words[0] == "export":
		for _, w := range words[1:] {
			name, value, ok := strings.Cut(w, "=")
			require.True(t, ok, "%s: export %s sets nothing", where, w)
			tr.exported[name] = value
		}
		tr.kinds["export"]++
	case len(words) == 2 && words[0] == "make" && words[1] == "run":
		// `make run` again, with what was exported since: the same
		// database and ports, as a restart in the same checkout.
		tr.dev.stop()
		env := maps.Clone(tr.dev.env)
		maps.Copy(env, tr.exported)
		tr.dev = startDev(t, env)
		tr.kinds["make run"]++
	default:
		require.Failf(t, "a tour step the test cannot run",
			"%s: %q: teach TestTheREADMETourRuns how to run it and what it must print", where, text)
	}
}

// lifecycleClaims is what the tour's comment says each lifecycle step
// does, and what simulate then prints: the event sent, the order's status
// and every key's.
var lifecycleClaims = map[string]struct{ claim, event, order, keys string }{
	"renewal":     {"one more period", "invoice.paid", "fulfilled", "active"},
	"dispute":     {"keys blacklisted", "charge.dispute.created", "revoked", "blacklisted"},
	"dispute-won": {"bans lifted", "charge.dispute.closed", "fulfilled", "active"},
	"cancel":      {"keys run out", "customer.subscription.deleted", "fulfilled", "ending"},
	"refund":      {"keys revoked", "charge.refunded", "revoked", "blacklisted"},
}

var (
	printedOrder   = regexp.MustCompile(`(?m)^order (cs_test_\w+) is (\w+) after `)
	printedKeyLine = regexp.MustCompile(`(?m)^  key (\S+)  (.*)$`)
)

// fulfiller runs `go run ./cmd/fulfiller args` in-process, from another
// terminal: simulate's defaults (the service on localhost:8080, the Stripe
// stand-in on 127.0.0.1:8092) moved to the ports in use.
func (tr *tour) fulfiller(where string, args []string, comment string) {
	t := tr.t
	t.Helper()
	command := "fulfiller " + strings.Join(args, " ")
	checkout := len(args) >= 2 && args[0] == "simulate" && args[1] == "checkout"
	var lifecycle struct{ claim, event, order, keys string }
	if !checkout {
		known := len(args) >= 2 && args[0] == "simulate"
		if known {
			lifecycle, known = lifecycleClaims[args[1]]
		}
		require.True(t, known, "%s: %s: teach TestTheREADMETourRuns what it must print", where, command)
		require.Contains(t, comment, lifecycle.claim, "%s: the tour no longer says simulate %s means %q: update lifecycleClaims", where, args[1], lifecycle.claim)
	}

	var out, errOut strings.Builder
	err := run(t.Context(), args, tr.dev.terminal(), &out, &errOut)
	require.NoError(t, err, "%s: %s\n%s%s", where, command, out.String(), errOut.String())
	printed := out.String()
	order := printedOrder.FindStringSubmatch(printed)
	require.NotNil(t, order, "%s: %s printed no order:\n%s", where, command, printed)
	keyLines := printedKeyLine.FindAllStringSubmatch(printed, -1)

	if checkout {
		// "prints the delivered keys": one per unit bought.
		quantity := 1
		for i, a := range args {
			if a == "--quantity" && i+1 < len(args) {
				quantity, err = strconv.Atoi(args[i+1])
				require.NoError(t, err, where)
			}
		}
		require.Equal(t, "fulfilled", order[2], "%s:\n%s", where, printed)
		require.Len(t, keyLines, quantity, "%s: one key per unit:\n%s", where, printed)
		tr.session = order[1]
		for _, k := range keyLines {
			tr.keys[tr.session] = append(tr.keys[tr.session], k[1])
		}
		tr.kinds["simulate checkout"]++
		return
	}
	require.Contains(t, printed, "sent "+lifecycle.event+" for "+tr.session+"\n", where)
	require.Equal(t, tr.session, order[1], where)
	require.Equal(t, lifecycle.order, order[2], "%s: %s:\n%s", where, command, printed)
	require.Len(t, keyLines, len(tr.keys[tr.session]), "%s: every key of the order:\n%s", where, printed)
	for _, k := range keyLines {
		require.Contains(t, tr.keys[tr.session], k[1], where)
		require.Contains(t, strings.Fields(k[2]), lifecycle.keys, "%s: %s: key %s", where, command, k[2])
	}
	tr.kinds["simulate lifecycle"]++
}

// localURL is a URL of the tour with dev's default addresses replaced by
// the ones in use; an address dev does not bind fails the test.
func (tr *tour) localURL(where, raw string) (*url.URL, string) {
	t := tr.t
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err, "%s: %s", where, raw)
	byDefault := map[string]string{
		devListenAddr: "LISTEN_ADDR", "localhost:8080": "LISTEN_ADDR",
		config.DefaultAdminAddr: "ADMIN_ADDR",
		devLuarmorAddr:          "DEV_LUARMOR_ADDR",
		devStripeAddr:           "DEV_STRIPE_ADDR",
		devMailAddr:             "DEV_MAIL_ADDR",
	}
	setting, ok := byDefault[u.Host]
	require.True(t, ok, "%s: %s is on %s, none of dev's default addresses", where, raw, u.Host)
	u.Host = tr.dev.env[setting]
	if u.Path == "" {
		u.Path = "/" // what a browser opens
	}
	return u, setting
}

// variable is $name in a tour command: what the tour exported.
func (tr *tour) variable(name string) (string, error) {
	v, ok := tr.exported[name]
	if !ok {
		return "", fmt.Errorf("$%s is used before the tour exports it", name)
	}
	return v, nil
}

// commandOutput is what a $(...) of the tour prints.
func commandOutput(command string) (string, error) {
	f := strings.Fields(command)
	if len(f) == 4 && f[0] == "openssl" && f[1] == "rand" {
		n, err := strconv.Atoi(f[3])
		if err == nil && n > 0 && n <= 1024 {
			b := make([]byte, n)
			_, _ = rand.Read(b)
			switch f[2] {
			case "-base64":
				return base64.StdEncoding.EncodeToString(b), nil
			case "-hex":
				return hex.EncodeToString(b), nil
			}
		}
	}
	return "", fmt.Errorf("$(%s): teach TestTheREADMETourRuns what it prints", command)
}

// curl does what the tour's curl line asks, with net/http, and checks the
// answer is what the tour says it is.
func (tr *tour) curl(where string, args []string) {
	t := tr.t
	t.Helper()
	method, body, rawURL := "", "", ""
	header := http.Header{}
	var user, password string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if !strings.HasPrefix(arg, "-") {
			require.Empty(t, rawURL, "%s: curl with two URLs", where)
			rawURL = arg
			continue
		}
		require.Less(t, i+1, len(args), "%s: curl %s needs a value", where, arg)
		value := args[i+1]
		i++
		switch arg {
		case "-u", "--user":
			var ok bool
			user, password, ok = strings.Cut(value, ":")
			require.True(t, ok, "%s: curl -u %s has no password", where, value)
		case "-H", "--header":
			name, v, ok := strings.Cut(value, ":")
			require.True(t, ok, "%s: curl -H %s", where, value)
			header.Add(strings.TrimSpace(name), strings.TrimSpace(v))
		case "-d", "--data":
			body = value
		case "-X", "--request":
			method = value
		default:
			require.Failf(t, "a curl flag the test cannot run", "%s: curl %s: teach TestTheREADMETourRuns what it does", where, arg)
		}
	}
	if method == "" {
		method = http.MethodGet
		if body != "" {
			method = http.MethodPost // as curl -d
		}
	}
	u, listener := tr.localURL(where, rawURL)
	req, err := http.NewRequestWithContext(t.Context(), method, u.String(), strings.NewReader(body))
	require.NoError(t, err)
	req.Header = header
	if body != "" && header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // as curl -d
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err, "%s: curl %s", where, rawURL)
	answer, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Less(t, resp.StatusCode, 300, "%s: curl %s %s answered %d: %s", where, method, rawURL, resp.StatusCode, answer)
	tr.kinds["curl"]++

	route := method + " " + u.Path
	switch {
	case listener == "LISTEN_ADDR" && method == http.MethodGet && strings.HasPrefix(u.Path, "/v1/orders/"):
		// "the same order as JSON"
		var o httpapi.OrderJSON
		require.NoError(t, json.Unmarshal(answer, &o), "%s: %s", where, answer)
		require.Equal(t, "fulfilled", o.Status, where)
		var keys []string
		for _, k := range o.Keys {
			keys = append(keys, k.UserKey)
		}
		require.ElementsMatch(t, tr.keys[strings.TrimPrefix(u.Path, "/v1/orders/")], keys, "%s: the order's keys as simulate printed them", where)
	case listener == "LISTEN_ADDR" && route == "POST /v1/key-lookup":
		// "the mailbox shows the email with a 30-minute link to the
		// buyer's orders"
		require.Equal(t, http.StatusAccepted, resp.StatusCode, where)
		require.JSONEq(t, `{"status":"accepted"}`, string(answer), where)
		var asked struct{ Email string }
		require.NoError(t, json.Unmarshal([]byte(body), &asked), where)
		mailbox := "http://" + tr.dev.env["DEV_MAIL_ADDR"]
		id := waitForMail(t, mailbox, asked.Email, "Your link to your license keys")
		status, page := fetch(t, http.MethodGet, mailbox+"/messages/"+id, "", "")
		require.Equal(t, http.StatusOK, status, where)
		require.Contains(t, page, "It works for 30 minutes", where)
		_, token, _ := strings.Cut(linkIn(t, page, "http://"+tr.dev.env["LISTEN_ADDR"]+"/my-keys#token="), "#token=")
		status, mine := fetch(t, http.MethodPost, "http://"+tr.dev.env["LISTEN_ADDR"]+"/v1/my-keys", "application/json", `{"token":"`+token+`"}`)
		require.Equal(t, http.StatusOK, status, "%s: the emailed link opens the buyer's orders: %s", where, mine)
		for _, k := range tr.keys[tr.session] {
			require.Contains(t, mine, k, "%s: the emailed link lists the buyer's keys", where)
		}
	case listener == "ADMIN_ADDR" && route == "GET /v1/admin/audit":
		// The audit log, opened with the admin login.
		var audit struct {
			Entries []httpapi.AdminAuditJSON `json:"entries"`
		}
		require.NoError(t, json.Unmarshal(answer, &audit), "%s: %s", where, answer)
		require.NotNil(t, audit.Entries, "%s: %s", where, answer)
	default:
		require.Failf(t, "a curl the test cannot check", "%s: curl %s: teach TestTheREADMETourRuns what it must answer", where, route)
	}
}

// open fetches a page the tour says to open, giving the admin login when
// the page asks for it, as the browser's prompt would, and checks the page
// shows what the tour says it does.
func (tr *tour) open(where, raw string) {
	t := tr.t
	t.Helper()
	u, listener := tr.localURL(where, raw)
	get := func(login bool) (*http.Response, string) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u.String(), nil)
		require.NoError(t, err)
		if login {
			req.SetBasicAuth(tr.exported["ADMIN_USER"], tr.exported["ADMIN_PASSWORD"])
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err, "%s: opening %s", where, raw)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		return resp, string(body)
	}
	resp, page := get(false)
	loggedIn := false
	if resp.StatusCode == http.StatusUnauthorized && strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
		require.NotEmpty(t, tr.exported["ADMIN_USER"], "%s: %s asks for a login the tour has not exported", where, raw)
		resp, page = get(true)
		loggedIn = true
	}
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s: %s", where, raw, page)
	tr.kinds["open"]++

	switch {
	case listener == "LISTEN_ADDR" && strings.HasPrefix(u.Path, "/orders/"):
		// "with each key, a Copy button, its expiry and a Reset HWID button"
		keys := tr.keys[strings.TrimPrefix(u.Path, "/orders/")]
		require.NotEmpty(t, keys, where)
		for _, k := range keys {
			require.Contains(t, page, k, where)
		}
		require.Contains(t, page, ">Copy<", where)
		require.Contains(t, page, ">Reset HWID<", where)
		require.Contains(t, page, "30 days", "%s: the keys' expiry, 30 days from first use", where)
	case listener == "LISTEN_ADDR" && u.Path == "/my-keys":
		require.Contains(t, page, "Find my keys", where)
	case listener == "DEV_MAIL_ADDR" && u.Path == "/":
		// "the keys email of that purchase is there, with its link to the
		// order page"
		mailbox := "http://" + tr.dev.env["DEV_MAIL_ADDR"]
		id := waitForMail(t, mailbox, "buyer@example.com", "Your license keys from "+devShop["SHOP_NAME"])
		status, message := fetch(t, http.MethodGet, mailbox+"/messages/"+id, "", "")
		require.Equal(t, http.StatusOK, status, where)
		for _, k := range tr.keys[tr.session] {
			require.Contains(t, message, k, where)
		}
		status, orderPage := fetch(t, http.MethodGet, linkIn(t, message, "http://"+tr.dev.env["LISTEN_ADDR"]+"/orders/"), "", "")
		require.Equal(t, http.StatusOK, status, where)
		require.Contains(t, orderPage, tr.keys[tr.session][0], "%s: the email's link opens the order page", where)
	case listener == "ADMIN_ADDR" && u.Path == "/metrics":
		require.Contains(t, page, "fulfiller_webhooks_received_total", where)
	case listener == "ADMIN_ADDR" && u.Path == "/readyz":
		require.JSONEq(t, `{"status":"ready"}`, page, where)
	case listener == "ADMIN_ADDR" && u.Path == "/console/":
		// "with that login, and search the buyer's email"
		require.True(t, loggedIn, "%s: the console opens only with the admin login", where)
		require.Contains(t, page, "fulfiller console", where)
		require.Contains(t, page, `action="/console/orders"`, "%s: the console's search form", where)
		tr.searchConsole(where, "buyer@example.com")
	case listener == "ADMIN_ADDR" && strings.HasPrefix(u.Path, "/riverui/"):
		// "with that login"
		require.True(t, loggedIn, "%s: the River UI opens only with the admin login", where)
		require.Contains(t, page, "<html", where)
	default:
		require.Failf(t, "a page the test cannot check", "%s: %s: teach TestTheREADMETourRuns what it must show", where, raw)
	}
}

// searchConsole searches the console for email as its form does and
// checks the tour's orders are found, each a link to its page.
func (tr *tour) searchConsole(where, email string) {
	t := tr.t
	t.Helper()
	u, _ := tr.localURL(where, "http://127.0.0.1:9090/console/orders")
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, u.String(), strings.NewReader("q="+url.QueryEscape(email)))
	require.NoError(t, err)
	req.SetBasicAuth(tr.exported["ADMIN_USER"], tr.exported["ADMIN_PASSWORD"])
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err, "%s: searching the console", where)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", where, body)
	for session := range tr.keys {
		require.Contains(t, string(body), `href="/console/orders/`+logging.OrderRef(session)+`"`, "%s: the search finds the tour's order", where)
	}
}

// shellWords splits a command line as sh does for what the tour writes:
// words, single and double quotes, backslash escapes, $NAME and ${NAME}
// (through variable), $(command) (through output), and a trailing
// comment, which it returns apart.
func shellWords(line string, variable, output func(string) (string, error)) (words []string, comment string, err error) {
	var word strings.Builder
	inWord := false
	rs := []rune(line)
	expand := func(i int) (string, int, error) { // rs[i] is '$'
		switch {
		case i+1 < len(rs) && rs[i+1] == '(':
			end := strings.IndexRune(string(rs[i+2:]), ')')
			if end < 0 {
				return "", 0, fmt.Errorf("unclosed $( in %q", line)
			}
			inner := string(rs[i+2:])[:end]
			v, err := output(inner)
			return v, i + 2 + len([]rune(inner)), err
		case i+1 < len(rs) && rs[i+1] == '{':
			end := strings.IndexRune(string(rs[i+2:]), '}')
			if end < 0 {
				return "", 0, fmt.Errorf("unclosed ${ in %q", line)
			}
			name := string(rs[i+2:])[:end]
			v, err := variable(name)
			return v, i + 2 + len([]rune(name)), err
		}
		j := i + 1
		for j < len(rs) && (rs[j] == '_' || unicode.IsLetter(rs[j]) || (j > i+1 && unicode.IsDigit(rs[j]))) {
			j++
		}
		if j == i+1 {
			return "$", i, nil
		}
		v, err := variable(string(rs[i+1 : j]))
		return v, j - 1, err
	}
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case unicode.IsSpace(r):
			if inWord {
				words, inWord = append(words, word.String()), false
				word.Reset()
			}
		case r == '#' && !inWord:
			return words, strings.TrimSpace(string(rs[i+1:])), nil
		case r == '\\' && i+1 < len(rs):
			i++
			word.WriteRune(rs[i])
			inWord = true
		case r == '\'':
			end := strings.IndexRune(string(rs[i+1:]), '\'')
			if end < 0 {
				return nil, "", fmt.Errorf("unclosed ' in %q", line)
			}
			quoted := string(rs[i+1:])[:end]
			word.WriteString(quoted)
			i += 1 + len([]rune(quoted))
			inWord = true
		case r == '"':
			inWord = true
			for i++; i < len(rs) && rs[i] != '"'; i++ {
				switch {
				case rs[i] == '\\' && i+1 < len(rs) && strings.ContainsRune("$`\"\\", rs[i+1]):
					i++
					word.WriteRune(rs[i])
				case rs[i] == '$':
					v, end, err := expand(i)
					if err != nil {
						return nil, "", err
					}
					word.WriteString(v)
					i = end
				default:
					word.WriteRune(rs[i])
				}
			}
			if i == len(rs) {
				return nil, "", fmt.Errorf(`unclosed " in %q`, line)
			}
		case r == '$':
			v, end, err := expand(i)
			if err != nil {
				return nil, "", err
			}
			word.WriteString(v)
			i = end
			inWord = true
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, word.String())
	}
	if len(words) == 0 {
		return nil, comment, fmt.Errorf("no command in %q", line)
	}
	return words, comment, nil
}

func TestShellWordsSplitsTheToursCommandsAsShDoes(t *testing.T) {
	t.Parallel()
	vars := func(name string) (string, error) {
		if name == "ADMIN_USER" {
			return "admin", nil
		}
		return "", fmt.Errorf("$%s unset", name)
	}
	out := func(command string) (string, error) { return "<" + command + ">", nil }
	for line, want := range map[string][]string{
		`go run ./cmd/fulfiller simulate renewal --session cs_x   # invoice.paid: one more period`: {"go", "run", "./cmd/fulfiller", "simulate", "renewal", "--session", "cs_x"},
		`curl -H 'Content-Type: application/json' -d '{"email":"a@b"}' http://h/x`:                 {"curl", "-H", "Content-Type: application/json", "-d", `{"email":"a@b"}`, "http://h/x"},
		`export ADMIN_USER=admin ADMIN_PASSWORD="$(openssl rand -base64 24)"`:                      {"export", "ADMIN_USER=admin", "ADMIN_PASSWORD=<openssl rand -base64 24>"},
		`curl -u "$ADMIN_USER:${ADMIN_USER}" http://h/#frag`:                                       {"curl", "-u", "admin:admin", "http://h/#frag"},
		`echo "" a\ b '$ADMIN_USER'`:                                                               {"echo", "", "a b", "$ADMIN_USER"},
	} {
		words, _, err := shellWords(line, vars, out)
		require.NoError(t, err, line)
		require.Equal(t, want, words, line)
	}
	_, comment, err := shellWords("make run # again", vars, out)
	require.NoError(t, err)
	require.Equal(t, "again", comment)
	_, _, err = shellWords(`curl -u "$ADMIN_PASSWORD" x`, vars, out)
	require.ErrorContains(t, err, "$ADMIN_PASSWORD unset")
	_, _, err = shellWords(`echo 'open`, vars, out)
	require.ErrorContains(t, err, "unclosed '")
}

func TestTourStepsAreTheCodeBlocksAndTheCommandsAndURLsOfTheProse(t *testing.T) {
	t.Parallel()
	readme := "# x\n\n```sh\nmake test\n```\n\n" + tourSection + "\n\n" +
		"Open `http://127.0.0.1:8080/orders/cs_test_...` and run\n`curl http://127.0.0.1:8080/v1/x`; `make run` is prose.\n\n" +
		"```sh\nexport A=b\nmake \\\n  run\n# then http://127.0.0.1:9090/riverui/ with that login\n\ncurl -u a:b http://127.0.0.1:9090/v1/admin/audit\n```\n\n" +
		"## Next\n\n`curl http://elsewhere`\n"
	require.Equal(t, []tourStep{
		{line: 9, text: "http://127.0.0.1:8080/orders/cs_test_...", open: true},
		{line: 9, text: "curl http://127.0.0.1:8080/v1/x"},
		{line: 13, text: "export A=b"},
		{line: 15, text: "make run"},
		{line: 16, text: "http://127.0.0.1:9090/riverui/", open: true},
		{line: 18, text: "curl -u a:b http://127.0.0.1:9090/v1/admin/audit"},
	}, tourSteps(t, readme))
}
