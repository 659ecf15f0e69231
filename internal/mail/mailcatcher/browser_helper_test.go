package mailcatcher_test

import (
	"testing"

	"fulfiller/internal/browsertest"
)

func TestMain(m *testing.M) { browsertest.Main(m) }

// browser is a tab of the shared headless Chromium (internal/browsertest),
// for one test.
type browser struct{ *browsertest.Tab }

// newBrowser opens a tab for the test. Without Chromium the test is
// skipped, except in CI (CI set), whose .ci/run installs chromium: there it
// fails.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	return &browser{Tab: browsertest.NewTab(t)}
}

// open loads url and evaluates expression once the page has loaded, its
// frames and images included (Navigate waits for the load event).
func (b *browser) open(t *testing.T, url, expression string) string {
	t.Helper()
	b.Open(t, url)
	return browsertest.Eval[string](t, b.Tab, expression)
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
