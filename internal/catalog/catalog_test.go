package catalog_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
)

func TestParse(t *testing.T) {
	t.Parallel()
	c, err := catalog.Parse(strings.NewReader(`
prices:
  price_1PqRsT:
    project_id: 3f98888f9999c9999e99a2
    key_days: 30
  price_life:
    project_id: p2
`))
	require.NoError(t, err)
	p, ok := c.Lookup("price_1PqRsT")
	require.True(t, ok)
	require.Equal(t, catalog.Product{ProjectID: "3f98888f9999c9999e99a2", KeyDays: 30}, p)
	p, ok = c.Lookup("price_life")
	require.True(t, ok)
	require.Zero(t, p.KeyDays)
	_, ok = c.Lookup("price_other")
	require.False(t, ok)
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown field":      {"prices:\n  price_a:\n    project_id: p\n    keydays: 3\n", "keydays"},
		"unknown top field":  {"price:\n  price_a:\n    project_id: p\n", "price"},
		"missing project":    {"prices:\n  price_a:\n    key_days: 3\n", "price_a: project_id is required"},
		"negative days":      {"prices:\n  price_a:\n    project_id: p\n    key_days: -1\n", "key_days must be"},
		"empty":              {"", "empty file"},
		"no prices":          {"prices: {}\n", "no prices"},
		"not yaml":           {"prices: [", "yaml"},
		"wrong type of days": {"prices:\n  price_a:\n    project_id: p\n    key_days: thirty\n", "thirty"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := catalog.Parse(strings.NewReader(tc.yaml))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	t.Parallel()
	_, err := catalog.Load(filepath.Join(t.TempDir(), "missing.yaml"))
	require.ErrorContains(t, err, "missing.yaml")
	require.ErrorContains(t, err, "CATALOG_FILE")

	path := filepath.Join(t.TempDir(), "catalog.yaml")
	require.NoError(t, os.WriteFile(path, []byte("prices:\n  price_a:\n    project_id: p\n    key_day: 3\n"), 0o600))
	_, err = catalog.Load(path)
	require.ErrorContains(t, err, path)
}
