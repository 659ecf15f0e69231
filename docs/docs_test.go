// Package docs holds the service's documentation; its tests keep the
// documents' links and the settings table true to the repository, since a
// moved file or a renamed heading otherwise breaks a link without a sound.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"
)

// root is the repository, seen from this package's directory.
const root = ".."

// documents lists the Markdown files whose links are checked, relative to
// the repository.
func documents(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	require.NotEmpty(t, docs, "no docs/*.md found")
	files := []string{"README.md", filepath.Join("deploy", "README.md")}
	for _, d := range docs {
		rel, err := filepath.Rel(root, d)
		require.NoError(t, err)
		files = append(files, rel)
	}
	return files
}

var (
	fence      = regexp.MustCompile("(?ms)^```.*?^```[ \t]*$")
	codeSpan   = regexp.MustCompile("`[^`\n]*`")
	inlineLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading    = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *#*$`)
)

// prose is a document without its code: a `[a](b)` in a code block or span
// is an example, not a link.
func prose(doc string) string {
	return codeSpan.ReplaceAllString(fence.ReplaceAllString(doc, ""), "")
}

// anchors are the fragment identifiers GitHub gives a document's headings:
// lower case, punctuation dropped, spaces as hyphens, a repeated heading
// suffixed -1, -2, ...
func anchors(doc string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, m := range heading.FindAllStringSubmatch(fence.ReplaceAllString(doc, ""), -1) {
		text := strings.ReplaceAll(m[1], "`", "")
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		slug := b.String()
		if n := seen[slug]; n > 0 {
			out[slug+"-"+strconv.Itoa(n)] = true
		} else {
			out[slug] = true
		}
		seen[slug]++
	}
	return out
}

func TestAnchorsFollowGitHubsHeadingIDs(t *testing.T) {
	got := anchors("# Design: how it works\n## Buyer's journey: the `hosted` page\n```\n# not a heading\n```\n## Metrics\n## Metrics\n")
	require.Equal(t, map[string]bool{
		"design-how-it-works":            true,
		"buyers-journey-the-hosted-page": true,
		"metrics":                        true,
		"metrics-1":                      true,
	}, got)
}

func TestEveryRelativeLinkResolves(t *testing.T) {
	checked := 0
	for _, file := range documents(t) {
		data, err := os.ReadFile(filepath.Join(root, file))
		require.NoError(t, err)
		for _, m := range inlineLink.FindAllStringSubmatch(prose(string(data)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, fragment, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				dest = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
			}
			info, err := os.Stat(filepath.Join(root, dest))
			require.NoError(t, err, "%s links to %s, which does not exist", file, target)
			checked++
			if fragment == "" || info.IsDir() || !strings.HasSuffix(dest, ".md") {
				continue
			}
			linked, err := os.ReadFile(filepath.Join(root, dest))
			require.NoError(t, err)
			require.True(t, anchors(string(linked))[fragment], "%s links to %s: %s has no heading with the anchor #%s", file, target, dest, fragment)
		}
	}
	// Guards the parser: links that stop being recognised must not pass
	// as links that all resolve.
	require.Greater(t, checked, 20, "hardly any links found: did the link syntax or the documents move?")
}

// The README is the newcomer's page: its detail belongs in docs/, where
// it does not push the set-up and the map out of sight.
func TestREADMEStaysShort(t *testing.T) {
	info, err := os.Stat(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	require.LessOrEqual(t, info.Size(), int64(10_500), "README.md grew past 10.5 KB: move detail into docs/ and link it")
}

var (
	settingRow = regexp.MustCompile("(?m)^\\| `([A-Z][A-Z0-9_]*)` \\|")
	readByName = regexp.MustCompile(`\bget(?:env)?\("([A-Z][A-Z0-9_]*)"`)
)

// settingsTableOf returns the settings named in the first column of the
// tables of docs/operating.md's section "## heading".
func settingsTableOf(t *testing.T, heading string) []string {
	t.Helper()
	doc, err := os.ReadFile("operating.md")
	require.NoError(t, err)
	section := string(doc)
	start := strings.Index(section, "\n## "+heading+"\n")
	require.NotEqual(t, -1, start, "docs/operating.md has no ## %s section", heading)
	section = section[start+1:]
	if end := strings.Index(section[3:], "\n## "); end != -1 {
		section = section[:end+3]
	}
	var documented []string
	for _, m := range settingRow.FindAllStringSubmatch(section, -1) {
		documented = append(documented, m[1])
	}
	return documented
}

// The settings table is the one list of settings (deploy's tests check
// every manifest against it), so it must hold exactly what internal/config
// reads.
func TestConfigurationTableListsExactlyTheSettingsTheServiceReads(t *testing.T) {
	documented := settingsTableOf(t, "Configuration")

	sources, err := filepath.Glob(filepath.Join(root, "internal", "config", "*.go"))
	require.NoError(t, err)
	var read []string
	for _, src := range sources {
		if strings.HasSuffix(src, "_test.go") {
			continue
		}
		data, err := os.ReadFile(src)
		require.NoError(t, err)
		for _, m := range readByName.FindAllStringSubmatch(string(data), -1) {
			// ADMIN_ADDR's former name, documented in ADMIN_ADDR's row.
			if m[1] != "METRICS_ADDR" && !slices.Contains(read, m[1]) {
				read = append(read, m[1])
			}
		}
	}
	slices.Sort(documented)
	slices.Sort(read)
	require.Greater(t, len(read), 20, "internal/config reads its settings some other way now: update this test")
	require.Equal(t, read, documented, "docs/operating.md's Configuration table and the settings internal/config reads differ")
}

var (
	devReadByName = regexp.MustCompile(`\bget(?:env)?\("(DEV_[A-Z0-9_]*)"`)
	makeDevVar    = regexp.MustCompile(`\$\$\{(DEV_[A-Z0-9_]*)`)
)

// `make run`'s own settings are read by cmd/fulfiller (dev) and the
// Makefile (its PostgreSQL), not internal/config: their table must hold
// exactly those.
func TestLocalDevelopmentTableListsExactlyTheSettingsMakeRunReads(t *testing.T) {
	documented := settingsTableOf(t, "Local development")

	var read []string
	add := func(name string) {
		if !slices.Contains(read, name) {
			read = append(read, name)
		}
	}
	sources, err := filepath.Glob(filepath.Join(root, "cmd", "fulfiller", "*.go"))
	require.NoError(t, err)
	for _, src := range sources {
		if strings.HasSuffix(src, "_test.go") {
			continue
		}
		data, err := os.ReadFile(src)
		require.NoError(t, err)
		for _, m := range devReadByName.FindAllStringSubmatch(string(data), -1) {
			add(m[1])
		}
	}
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	require.NoError(t, err)
	for _, m := range makeDevVar.FindAllStringSubmatch(string(makefile), -1) {
		add(m[1])
	}
	slices.Sort(documented)
	slices.Sort(read)
	require.GreaterOrEqual(t, len(read), 4, "cmd/fulfiller and the Makefile read their DEV_ settings some other way now: update this test")
	require.Equal(t, read, documented, "docs/operating.md's Local development table and the DEV_ settings make run reads differ")
}
