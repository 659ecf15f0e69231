// Package browsertest drives a real headless Chromium for tests: one
// browser per test binary, a tab per test, and Check, which holds each page
// state a test shows to axe-core's accessibility rules and to a phone's
// width, and keeps its screenshots.
//
// Test support only: production code never imports it.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// One headless Chromium serves every browser test of a test binary; each
// test opens its own tab. Main stops it once the binary's tests are done.
var shared struct {
	once    sync.Once
	ctx     context.Context // the browser's; tabs derive from it
	stop    func()
	problem string // why there is no browser
}

// Main runs a test binary's tests, then stops its browser if one was
// started. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if shared.stop != nil {
		shared.stop()
	}
	os.Exit(code)
}

// chromiumPath finds Debian's chromium (or another Chrome) on PATH.
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func startBrowser() {
	path := chromiumPath()
	if path == "" {
		shared.problem = "chromium is not installed (apt-get install chromium)"
		return
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.NoFirstRun,
		chromedp.Flag("headless", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	// The first Do starts the browser, tied to the context it runs with:
	// the browser's own, not a step's.
	if err := chromedp.Do(browserCtx); err != nil {
		cancelBrowser()
		cancelAlloc()
		shared.problem = "starting " + path + ": " + err.Error()
		return
	}
	shared.ctx = browserCtx
	shared.stop = func() { cancelBrowser(); cancelAlloc() }
}

// Tab is one browser tab of a test.
type Tab struct {
	// Ctx is the tab's context, for chromedp calls of a test's own.
	Ctx context.Context
	// ArtifactDir receives Check's screenshots and results: the
	// repository's screenshots/ unless a test sets another.
	ArtifactDir string
}

// NewTab opens a tab at desktop size, closed when the test ends. Without a
// browser the test is skipped, except in CI (CI set), whose .ci/run
// installs chromium: there it fails.
func NewTab(t testing.TB) *Tab {
	t.Helper()
	shared.once.Do(startBrowser)
	if shared.problem != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("browser test: %s (.ci/run installs chromium)", shared.problem)
		}
		t.Skipf("browser test: %s", shared.problem)
	}
	ctx, closeTab := chromedp.NewContext(shared.ctx)
	t.Cleanup(closeTab)
	// The first Do opens the tab, tied to the context it runs with: the
	// tab's own, not a step's, which ends with the step.
	require.NoError(t, chromedp.Do(ctx), "opening a tab")
	tab := &Tab{Ctx: ctx, ArtifactDir: screenshotsDir()}
	tab.Run(t, chromedp.EmulateViewport(Desktop.Width, Desktop.Height))
	return tab
}

// Timeout bounds one step of a browser test: generous, since the machine
// may be busy; steps end as soon as their condition holds.
const Timeout = 30 * time.Second

// Run runs steps, failing the test on the first error.
func (tab *Tab) Run(t testing.TB, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, Timeout)
	defer cancel()
	require.NoError(t, chromedp.Do(ctx, steps...))
}

// Get runs one action and returns its value.
func Get[T any](t testing.TB, tab *Tab, action chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, Timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	require.NoError(t, err)
	return v
}

// Eval evaluates a script expression in the page, awaiting a promise.
func Eval[T any](t testing.TB, tab *Tab, expression string) T {
	t.Helper()
	return Get(t, tab, chromedp.Evaluate[T](expression, chromedp.EvalAwaitPromise))
}

// Open loads url and waits until the page's body is there (its scripts
// have run: Navigate waits for the load event).
func (tab *Tab) Open(t testing.TB, url string) {
	t.Helper()
	tab.Run(t, chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS("body")))
}

// WaitFor evaluates a boolean script expression (a promise is awaited)
// until it is true, for at most Timeout.
func (tab *Tab) WaitFor(t testing.TB, expression, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, Timeout)
	defer cancel()
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expression, chromedp.EvalAwaitPromise))
		if err == nil && ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s (%s): %v", what, expression, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Text is the visible text of the first element matching selector.
func (tab *Tab) Text(t testing.TB, selector string) string {
	t.Helper()
	return strings.TrimSpace(Get(t, tab, chromedp.Text(chromedp.CSS(selector))))
}

// Location is the tab's address.
func (tab *Tab) Location(t testing.TB) string {
	t.Helper()
	return Eval[string](t, tab, `location.href`)
}

// Grant grants the pages of origin the named permissions
// ("clipboard-read", "clipboard-write").
func (tab *Tab) Grant(t testing.TB, origin string, permissions ...string) {
	t.Helper()
	for _, permission := range permissions {
		_, err := chromedp.CallBrowser(tab.Ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: permission}, Setting: browser.PermissionSettingGranted, Origin: origin})
		require.NoError(t, err, "granting %s", permission)
	}
}
