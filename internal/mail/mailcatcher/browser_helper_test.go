package mailcatcher_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// browser is a headless Chromium of one test.
type browser struct{ ctx context.Context }

// newBrowser starts Chromium for the test. Without one the test is
// skipped, except in CI (CI set), whose .ci/run installs chromium: there it
// fails.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("browser test: chromium is not installed (.ci/run installs it)")
		}
		t.Skip("browser test: chromium is not installed (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	require.NoError(t, chromedp.Do(ctx), "starting %s", path)
	return &browser{ctx: ctx}
}

// browserTimeout bounds one page load on a busy machine.
const browserTimeout = 30 * time.Second

// open loads url and evaluates expression once the page has loaded, its
// frames and images included (Navigate waits for the load event).
func (b *browser) open(t *testing.T, url, expression string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS("body"))), url)
	value, err := chromedp.Run(ctx, chromedp.Evaluate[string](expression))
	require.NoError(t, err, url)
	return value
}

// attribute opens url and returns the root element's attribute name ("" if
// unset).
func (b *browser) attribute(t *testing.T, url, name string) string {
	t.Helper()
	return b.open(t, url, `document.documentElement.getAttribute("`+name+`") || ""`)
}

// title opens url and returns the page's title.
func (b *browser) title(t *testing.T, url string) string {
	t.Helper()
	return b.open(t, url, `document.title`)
}
