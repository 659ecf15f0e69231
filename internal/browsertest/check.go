package browsertest

import (
	_ "embed"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/browsertest/axereport"
)

// axeSource is axe-core (see axe/README.md), injected into the pages Check
// looks at.
//
//go:embed axe/axe.min.js
var axeSource string

// Size is a viewport a page state is checked at.
type Size struct {
	Name          string
	Width, Height int64
}

// The sizes every page state is checked at: a laptop and a phone.
const (
	DesktopWidth, DesktopHeight = 1280, 900
	PhoneWidth, PhoneHeight     = 390, 844
)

var (
	Desktop = Size{Name: "desktop", Width: DesktopWidth, Height: DesktopHeight}
	Phone   = Size{Name: "phone", Width: PhoneWidth, Height: PhoneHeight}
)

// axeTags select axe-core's WCAG 2.0, 2.1 and 2.2 level A and AA rules,
// and its best practices (landmarks, heading order, unique names).
var axeTags = []string{"wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"}

// Violation is one axe-core rule a page breaks.
type Violation struct {
	ID      string   `json:"id"`
	Impact  string   `json:"impact"` // minor, moderate, serious or critical
	Help    string   `json:"help"`
	HelpURL string   `json:"helpUrl"`
	Nodes   []string `json:"nodes"` // the failing elements' selectors
}

// Blocking reports whether the violation fails a check: serious and
// critical ones do; minor and moderate ones are recorded only.
func (v Violation) Blocking() bool { return v.Impact == "serious" || v.Impact == "critical" }

// Finding is what a check saw of a page state at one size.
type Finding struct {
	Size       Size
	Violations []Violation
	// Overflow is how far the page scrolls sideways, in CSS pixels.
	Overflow   int64
	Screenshot string // the PNG's path
}

// Check checks the page as it is now, one state of the test, at desktop
// and phone sizes: axe-core finds no serious or critical violation, and
// the page does not scroll sideways. It saves a full-page screenshot of
// each size to <Test>-<state>-{desktop,phone}.png and appends the axe
// results to axe-results.jsonl, both in ArtifactDir, and leaves the tab at
// desktop size.
func (tab *Tab) Check(t testing.TB, state string) {
	t.Helper()
	if problems := Problems(tab.Audit(t, state), true); len(problems) > 0 {
		t.Fatalf("page state %q:\n%s", state, strings.Join(problems, "\n"))
	}
}

// Audit looks at the page as Check does and returns what it found at each
// size, failing the test only if the browser cannot be driven.
func (tab *Tab) Audit(t testing.TB, state string) []Finding {
	t.Helper()
	require.NoError(t, os.MkdirAll(tab.ArtifactDir, 0o755))
	var findings []Finding
	for _, size := range []Size{Desktop, Phone} {
		tab.Run(t, chromedp.EmulateViewport(size.Width, size.Height))
		f := Finding{Size: size, Violations: tab.axe(t)}
		f.Overflow = Eval[int64](t, tab, `document.documentElement.scrollWidth - document.documentElement.clientWidth`)
		shot := Get(t, tab, chromedp.FullScreenshot(100)) // 100: PNG
		name := strings.ReplaceAll(t.Name(), "/", "_") + "-" + state + "-" + size.Name + ".png"
		f.Screenshot = filepath.Join(tab.ArtifactDir, name)
		require.NoError(t, os.WriteFile(f.Screenshot, shot, 0o644))
		rec := axereport.Record{Test: t.Name(), State: state, Size: size.Name, Width: size.Width, Height: size.Height,
			Counts: map[string]int{}, Violations: []string{}, Overflow: f.Overflow, Screenshot: name}
		for _, v := range f.Violations {
			rec.Counts[v.Impact]++
			rec.Violations = append(rec.Violations, v.ID+" ("+v.Impact+")")
		}
		require.NoError(t, axereport.Append(tab.ArtifactDir, rec))
		findings = append(findings, f)
	}
	tab.Run(t, chromedp.EmulateViewport(Desktop.Width, Desktop.Height))
	return findings
}

// Problems lists what fails a check in findings, under a line naming the
// size and its screenshot: each serious or critical violation with its
// rule, help and failing elements, and, if fit, a page wider than its
// viewport. None if the check passes.
func Problems(findings []Finding, fit bool) []string {
	var problems []string
	for _, f := range findings {
		var found []string
		for _, v := range f.Violations {
			if v.Blocking() {
				found = append(found, fmt.Sprintf("  axe rule %s (%s): %s (%s); elements: %s",
					v.ID, v.Impact, v.Help, v.HelpURL, strings.Join(v.Nodes, ", ")))
			}
		}
		if fit && f.Overflow > 0 {
			found = append(found, fmt.Sprintf("  the page scrolls sideways by %d px", f.Overflow))
		}
		if len(found) > 0 {
			header := fmt.Sprintf("at %s size (%d×%d; screenshot %s):", f.Size.Name, f.Size.Width, f.Size.Height, f.Screenshot)
			problems = append(append(problems, header), found...)
		}
	}
	return problems
}

// axe runs axe-core in the page and returns its violations. The script is
// evaluated through the DevTools protocol, which the page's
// Content-Security-Policy (scripts from its own origin only) does not
// govern; frames are left out (an email's frame is checked on its own).
func (tab *Tab) axe(t testing.TB) []Violation {
	t.Helper()
	if !Eval[bool](t, tab, `typeof window.axe === "object" && typeof window.axe.run === "function"`) {
		tab.Run(t, chromedp.Evaluate[chromedp.Void](axeSource+"\n;void 0"))
	}
	tags := `["` + strings.Join(axeTags, `", "`) + `"]`
	return Eval[[]Violation](t, tab, `axe.run(document, {
		runOnly: {type: "tag", values: `+tags+`},
		resultTypes: ["violations"],
		iframes: false,
	}).then(r => r.violations.map(v => ({
		id: v.id, impact: v.impact || "", help: v.help, helpUrl: v.helpUrl,
		nodes: v.nodes.map(n => n.target.map(String).join(" ")),
	})))`)
}

// emailCSP serves an email's HTML part as mail clients show it: its own
// styles, no script and nothing loaded from elsewhere but images.
const emailCSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data: http: https:; base-uri 'none'; form-action 'none'"

// CheckEmail renders an email's HTML part in a tab of its own and checks
// it at both sizes: no serious or critical axe-core violation. Mail clients
// lay out emails their own way, so sideways scrolling is recorded in the
// screenshots, not failed.
func CheckEmail(t testing.TB, state, html string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Security-Policy", emailCSP)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(html))
	}))
	t.Cleanup(srv.Close)
	tab := NewTab(t)
	tab.Open(t, srv.URL)
	if problems := Problems(tab.Audit(t, state), false); len(problems) > 0 {
		t.Fatalf("email %q:\n%s", state, strings.Join(problems, "\n"))
	}
}

// screenshotsDir is screenshots/ at the repository's root (git-ignored).
func screenshotsDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("browsertest: no caller information to find the repository's root")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "screenshots")
}
