package app_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// One headless Chromium serves every browser test of the package; each test
// opens its own tab. TestMain stops it once the package's tests are done.

var shared struct {
	once    sync.Once
	ctx     context.Context // the browser's; tabs derive from it
	stop    func()
	problem string // why there is no browser
}

func TestMain(m *testing.M) {
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

// page is one browser tab on the service.
type page struct {
	ctx     context.Context
	baseURL string
}

// newPage opens a tab at 1280 px wide, with the clipboard readable by the
// service's pages. Without a browser the test is skipped, except in CI (CI
// set), whose .ci/run installs chromium: there it fails.
func newPage(t *testing.T, b *bundle) *page {
	t.Helper()
	shared.once.Do(startBrowser)
	if shared.problem != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("browser test: %s (.ci/run installs chromium)", shared.problem)
		}
		t.Skipf("browser test: %s", shared.problem)
	}
	tab, closeTab := chromedp.NewContext(shared.ctx)
	t.Cleanup(closeTab)
	// The first Do opens the tab, tied to the context it runs with: the
	// tab's own, not a step's, which ends with the step.
	require.NoError(t, chromedp.Do(tab), "opening a tab")
	p := &page{ctx: tab, baseURL: b.URL}
	p.run(t, chromedp.EmulateViewport(desktopWidth, 900))
	for _, permission := range []string{"clipboard-read", "clipboard-write"} {
		_, err := chromedp.CallBrowser(tab, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: permission}, Setting: browser.PermissionSettingGranted, Origin: b.URL})
		require.NoError(t, err, "granting %s", permission)
	}
	return p
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
	// The first Run starts the browser, tied to the context it runs with:
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

// browserTimeout bounds one step of a browser test: generous, since the
// machine may be busy; steps end as soon as their condition holds.
const browserTimeout = 30 * time.Second

func (p *page) run(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserTimeout)
	defer cancel()
	require.NoError(t, chromedp.Do(ctx, steps...))
}

// get runs one action and returns its value.
func get[T any](t *testing.T, p *page, action chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	require.NoError(t, err)
	return v
}

// open loads path and waits until its page ran its script.
func (p *page) open(t *testing.T, path string) {
	t.Helper()
	p.run(t, chromedp.Navigate(p.baseURL+path), chromedp.WaitReady(chromedp.CSS("body")))
}

// eval evaluates a script expression in the page, awaiting a promise.
func eval[T any](t *testing.T, p *page, expression string) T {
	t.Helper()
	return get(t, p, chromedp.Evaluate[T](expression, func(e *cdpruntime.EvaluateParams) { e.AwaitPromise = new(true) }))
}

// waitFor evaluates a boolean script expression (a promise is awaited)
// until it is true, for at most browserTimeout.
func (p *page) waitFor(t *testing.T, expression, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserTimeout)
	defer cancel()
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expression, func(e *cdpruntime.EvaluateParams) { e.AwaitPromise = new(true) }))
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

// text is the visible text of the first element matching selector.
func (p *page) text(t *testing.T, selector string) string {
	t.Helper()
	return strings.TrimSpace(get(t, p, chromedp.Text(chromedp.CSS(selector))))
}

const (
	desktopWidth = 1280
	phoneWidth   = 375
)

// screenshots saves the page as it is at desktop and phone widths into
// screenshots/ at the repository root, named after the test and state, and
// requires the phone rendering to fit without horizontal scrolling.
func (p *page) screenshots(t *testing.T, state string) {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "screenshots")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for _, width := range []int64{desktopWidth, phoneWidth} {
		p.run(t, chromedp.EmulateViewport(width, 800))
		overflow := eval[int](t, p, `document.documentElement.scrollWidth - document.documentElement.clientWidth`)
		shot := get(t, p, chromedp.FullScreenshot(100))
		require.LessOrEqual(t, overflow, 0, "%s at %d px scrolls horizontally by %d px", state, width, overflow)
		name := strings.ReplaceAll(t.Name(), "/", "_") + "-" + state + "-" + map[int64]string{desktopWidth: "desktop", phoneWidth: "phone"}[width] + ".png"
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), shot, 0o644))
	}
	p.run(t, chromedp.EmulateViewport(desktopWidth, 900))
}

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	require.True(t, ok)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
