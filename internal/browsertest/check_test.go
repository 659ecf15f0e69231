package browsertest_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/browsertest"
	"fulfiller/internal/browsertest/axereport"
)

func TestMain(m *testing.M) { browsertest.Main(m) }

// pagePolicy is the service's own kind of policy: scripts from its origin
// only, which the injected checker must get past without weakening it.
const pagePolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'"

// servePage serves body as a page under pagePolicy, and a one-pixel image.
func servePage(t *testing.T, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/pixel.gif" {
			w.Header().Set("Content-Type", "image/gif")
			_, _ = w.Write([]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x00;"))
			return
		}
		w.Header().Set("Content-Security-Policy", pagePolicy)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = fmt.Fprint(w, `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">`+
			`<meta name="viewport" content="width=device-width, initial-scale=1"><title>Check</title></head>`+
			`<body><main><h1>Your order</h1>`+body+`</main></body></html>`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// fatalRecorder stands in for the test Check is given, keeping its
// failure instead of ending the test.
type fatalRecorder struct {
	testing.TB
	failures []string
}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func TestCheckFailsOnSeriousViolationsAndSidewaysScrolling(t *testing.T) {
	t.Parallel()
	tab := browsertest.NewTab(t)
	tab.ArtifactDir = t.TempDir()
	tab.Open(t, servePage(t, `<img src="/pixel.gif">`+
		`<input id="discord-id" type="text">`+
		`<div id="banner"></div>`))
	// A banner wider than a phone, not than a laptop; its width is set
	// through the DOM, as the page's policy allows no inline style.
	browsertest.Eval[bool](t, tab, `(document.getElementById("banner").style.width = "600px", document.getElementById("banner").style.height = "10px", true)`)

	r := &fatalRecorder{TB: t}
	tab.Check(r, "broken")
	require.Len(t, r.failures, 1, "the check fails the test once, listing every problem")
	failure := r.failures[0]
	desktop, phone, ok := strings.Cut(failure, "at phone size (390×844; screenshot ")
	require.True(t, ok, "the phone's problems under their own heading: %s", failure)
	require.Contains(t, desktop, "at desktop size (1280×900; screenshot ")
	for _, atSize := range []string{desktop, phone} {
		require.Contains(t, atSize, "axe rule image-alt (critical): Images must have alternative text")
		require.Contains(t, atSize, "elements: img\n")
		require.Contains(t, atSize, "axe rule label (critical): Form elements must have labels")
		require.Contains(t, atSize, "elements: #discord-id")
	}
	require.Contains(t, phone, "the page scrolls sideways by")
	require.NotContains(t, desktop, "scrolls sideways", "a laptop fits the page")
	require.Contains(t, failure, "https://dequeuniversity.com/rules/axe/", "each rule links its explanation")

	// The screenshots and the results are kept.
	for _, size := range []string{"desktop", "phone"} {
		png, err := os.ReadFile(filepath.Join(tab.ArtifactDir, t.Name()+"-broken-"+size+".png"))
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(string(png), "\x89PNG"), "a PNG")
	}
	records, err := axereport.Read(tab.ArtifactDir)
	require.NoError(t, err)
	require.Len(t, records, 2)
	for i, size := range []string{"desktop", "phone"} {
		require.Equal(t, t.Name(), records[i].Test)
		require.Equal(t, "broken", records[i].State)
		require.Equal(t, size, records[i].Size)
		require.Equal(t, 2, records[i].Counts["critical"], "image-alt and label")
		require.Contains(t, records[i].Violations, "image-alt (critical)")
		require.Contains(t, records[i].Violations, "label (critical)")
	}
}

func TestCheckPassesAnAccessiblePage(t *testing.T) {
	t.Parallel()
	tab := browsertest.NewTab(t)
	tab.ArtifactDir = t.TempDir()
	tab.Open(t, servePage(t, `<img src="/pixel.gif" alt="Acme">`+
		`<form><label for="discord-id">Discord ID</label> <input id="discord-id" type="text">`+
		`<button type="submit">Save</button></form>`))

	r := &fatalRecorder{TB: t}
	tab.Check(r, "clean")
	require.Empty(t, r.failures)
	records, err := axereport.Read(tab.ArtifactDir)
	require.NoError(t, err)
	require.Len(t, records, 2)
	for _, rec := range records {
		require.Zero(t, rec.Counts["serious"]+rec.Counts["critical"], "%v", rec.Violations)
	}
	require.Equal(t, int64(browsertest.Desktop.Width), browsertest.Eval[int64](t, tab, `window.innerWidth`), "the tab is back at desktop size")
}
