package app_test

import (
	"context"
	"testing"

	"github.com/chromedp/chromedp"

	"fulfiller/internal/browsertest"
)

// The package's browser tests drive internal/browsertest's shared headless
// Chromium through these short names; TestMain stops it once the
// package's tests are done.

func TestMain(m *testing.M) { browsertest.Main(m) }

// page is one browser tab on the service.
type page struct {
	*browsertest.Tab
	ctx     context.Context // the tab's, for chromedp calls of a test's own
	baseURL string
}

// newPage opens a tab at desktop size, with the clipboard readable by the
// service's pages. Without a browser the test is skipped, except in CI (CI
// set), whose .ci/run installs chromium: there it fails.
func newPage(t *testing.T, b *bundle) *page {
	t.Helper()
	tab := browsertest.NewTab(t)
	tab.Grant(t, b.URL, "clipboard-read", "clipboard-write")
	return &page{Tab: tab, ctx: tab.Ctx, baseURL: b.URL}
}

func (p *page) run(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	p.Run(t, steps...)
}

// get runs one action and returns its value.
func get[T any](t *testing.T, p *page, action chromedp.Action[T]) T {
	t.Helper()
	return browsertest.Get(t, p.Tab, action)
}

// open loads path and waits until its page ran its script.
func (p *page) open(t *testing.T, path string) {
	t.Helper()
	p.Open(t, p.baseURL+path)
}

// eval evaluates a script expression in the page, awaiting a promise.
func eval[T any](t *testing.T, p *page, expression string) T {
	t.Helper()
	return browsertest.Eval[T](t, p.Tab, expression)
}

// waitFor evaluates a boolean script expression (a promise is awaited)
// until it is true.
func (p *page) waitFor(t *testing.T, expression, what string) {
	t.Helper()
	p.WaitFor(t, expression, what)
}

// text is the visible text of the first element matching selector.
func (p *page) text(t *testing.T, selector string) string {
	t.Helper()
	return p.Text(t, selector)
}

// The widths screenshots checks at, for tests that size a tab themselves
// (chromedp.EmulateViewport).
const (
	desktopWidth = browsertest.DesktopWidth
	phoneWidth   = browsertest.PhoneWidth
)

// While no test sizes a tab itself, this keeps the widths' names in use.
var _ = [...]int64{desktopWidth, phoneWidth}

// screenshots checks the page as it is, one state of the test, at desktop
// and phone sizes: no serious or critical axe-core violation, no sideways
// scrolling; it keeps the screenshots and results in screenshots/ at the
// repository's root.
func (p *page) screenshots(t *testing.T, state string) {
	t.Helper()
	p.Check(t, state)
}

// checkEmail renders an email's HTML part in Chromium and checks it as
// screenshots checks a page (serious and critical axe-core violations fail
// the test), keeping its screenshots beside the pages'.
func checkEmail(t *testing.T, state, html string) {
	t.Helper()
	browsertest.CheckEmail(t, state, html)
}
