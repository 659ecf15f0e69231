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
    key_days: 0
  price_seats:
    project_id: p2
    key_days: 3650
    max_quantity: 5
  price_monthly:
    project_id: p2
    key_days: 30
    billing: recurring
`))
	require.NoError(t, err)
	require.Equal(t, 4, c.Len())
	for id, want := range map[string]catalog.Product{
		"price_1PqRsT":  {ProjectID: "3f98888f9999c9999e99a2", KeyDays: 30},
		"price_life":    {ProjectID: "p2", KeyDays: 0},
		"price_seats":   {ProjectID: "p2", KeyDays: 3650, MaxQuantity: 5},
		"price_monthly": {ProjectID: "p2", KeyDays: 30, Billing: catalog.BillingRecurring},
	} {
		p, ok := c.Lookup(id)
		require.True(t, ok, id)
		require.Equal(t, want, p, id)
	}
	_, ok := c.Lookup("price_other")
	require.False(t, ok)
}

func TestParseOneDocumentWithMarkers(t *testing.T) {
	t.Parallel()
	// A leading --- and a closing ... still make one document.
	c, err := catalog.Parse(strings.NewReader("---\nprices:\n  price_a:\n    project_id: p\n    key_days: 1\n...\n"))
	require.NoError(t, err)
	require.Equal(t, 1, c.Len())
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	const ok = "    project_id: p\n    key_days: 3\n"
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown field":         {"prices:\n  price_a:\n    project_id: p\n    keydays: 3\n", "keydays"},
		"unknown top field":     {"price:\n  price_a:\n" + ok, "price"},
		"missing project":       {"prices:\n  price_a:\n    key_days: 3\n", `price "price_a": project_id is required`},
		"empty project":         {"prices:\n  price_a:\n    project_id: \"\"\n    key_days: 3\n", `price "price_a": project_id is required`},
		"blank project":         {"prices:\n  price_a:\n    project_id: \"  \"\n    key_days: 3\n", `price "price_a": project_id is empty`},
		"spaced project":        {"prices:\n  price_a:\n    project_id: \" p \"\n    key_days: 3\n", `price "price_a": project_id contains spaces`},
		"missing key_days":      {"prices:\n  price_a:\n    project_id: p\n", `price "price_a": key_days is required`},
		"null key_days":         {"prices:\n  price_a:\n    project_id: p\n    key_days: null\n", `price "price_a": key_days is required`},
		"negative days":         {"prices:\n  price_a:\n    project_id: p\n    key_days: -1\n", `price "price_a": key_days must be 0 (lifetime) to 3650, not -1`},
		"days over ten years":   {"prices:\n  price_a:\n    project_id: p\n    key_days: 3651\n", `price "price_a": key_days must be 0 (lifetime) to 3650, not 3651`},
		"wrong type of days":    {"prices:\n  price_a:\n    project_id: p\n    key_days: thirty\n", "thirty"},
		"days as a string":      {"prices:\n  price_a:\n    project_id: p\n    key_days: \"30\"\n", "30"},
		"empty entry":           {"prices:\n  price_a:\n", `price "price_a": project_id and key_days are required`},
		"spaced price ID":       {"prices:\n  \" price_a\":\n" + ok, `price " price_a": its ID contains spaces`},
		"price ID with a tab":   {"prices:\n  \"price\\ta\":\n" + ok, `price "price\ta": its ID contains spaces`},
		"blank price ID":        {"prices:\n  \" \":\n" + ok, `price " ": its ID is empty`},
		"zero max_quantity":     {"prices:\n  price_a:\n" + ok + "    max_quantity: 0\n", `price "price_a": max_quantity must be 1 or more, not 0`},
		"negative max_quantity": {"prices:\n  price_a:\n" + ok + "    max_quantity: -2\n", `price "price_a": max_quantity must be 1 or more`},
		"unknown billing":       {"prices:\n  price_a:\n" + ok + "    billing: monthly\n", `price "price_a": billing must be one_time or recurring, not "monthly"`},
		"misspelt field":        {"prices:\n  price_a:\n" + ok + "    stocks: 10\n", "stocks"},
		"duplicate price":       {"prices:\n  price_a:\n" + ok + "  price_a:\n" + ok, "already defined"},
		"second document":       {"prices:\n  price_a:\n" + ok + "---\nprices:\n  price_b:\n" + ok, "more than one YAML document"},
		"empty second document": {"prices:\n  price_a:\n" + ok + "---\n", "more than one YAML document"},
		"empty":                 {"", "empty file"},
		"no prices":             {"prices: {}\n", "no prices"},
		"not yaml":              {"prices: [", "yaml"},
		"too large":             {"prices:\n  price_a:\n" + ok + "#" + strings.Repeat("x", 4<<20) + "\n", "larger than"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := catalog.Parse(strings.NewReader(tc.yaml))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := catalog.Parse(strings.NewReader("prices:\n  price_a:\n    project_id: p\n  price_b:\n    key_days: 4000\n"))
	require.EqualError(t, err, `price "price_a": key_days is required (days from first use; 0 for a lifetime key); `+
		`price "price_b": project_id is required; price "price_b": key_days must be 0 (lifetime) to 3650, not 4000`)
}

func TestExampleCatalogParses(t *testing.T) {
	t.Parallel()
	c, err := catalog.Load(filepath.Join("..", "..", "catalog.example.yaml"))
	require.NoError(t, err)
	p, ok := c.Lookup("price_dev_lifetime")
	require.True(t, ok)
	require.Zero(t, p.KeyDays)
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

func TestParseStock(t *testing.T) {
	t.Parallel()
	c, err := catalog.Parse(strings.NewReader(`
prices:
  price_a:
    project_id: p1
    key_days: 30
    stock: 25
  price_b:
    project_id: p1
    key_days: 7
    billing: one_time
    stock: 10000
  price_c:
    project_id: p1
    key_days: 7
    stock: 0
  price_d:
    project_id: p1
    key_days: 30
    billing: recurring
`))
	require.NoError(t, err)
	a, _ := c.Lookup("price_a")
	require.Equal(t, 25, a.Stock)
	b, _ := c.Lookup("price_b")
	require.Equal(t, catalog.MaxStock, b.Stock)
	require.Equal(t, []string{"price_a", "price_b"}, c.Stocked(), "only prices with a stock above 0")
	require.True(t, c.StocksAny())

	c.Put("price_a", catalog.Product{ProjectID: "p1", KeyDays: 30})
	c.Put("price_b", catalog.Product{ProjectID: "p1", KeyDays: 7})
	require.False(t, c.StocksAny(), "no price keeps a stock any more")
	require.False(t, (*catalog.Catalog)(nil).StocksAny())
}

func TestParseRejectsStock(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ entry, want string }{
		"negative":     {"stock: -1", `price "p": stock must be 0 to 10000, not -1`},
		"too large":    {"stock: 10001", `price "p": stock must be 0 to 10000, not 10001`},
		"recurring":    {"billing: recurring\n    stock: 5", `price "p": stock is for one-off prices only`},
		"not a number": {"stock: many", "cannot unmarshal"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := catalog.Parse(strings.NewReader("prices:\n  p:\n    project_id: p1\n    key_days: 30\n    " + tc.entry + "\n"))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestParseNamesAndDescriptions(t *testing.T) {
	t.Parallel()
	c, err := catalog.Parse(strings.NewReader(`
prices:
  price_month:
    project_id: p1
    key_days: 30
    name: "  Pro <b>Monthly</b> "
    description: Every feature, for 30 days from first use.
  price_old:
    project_id: p1
    key_days: 0
`))
	require.NoError(t, err, "a catalog written before names still loads")
	p, _ := c.Lookup("price_month")
	require.Equal(t, catalog.Product{ProjectID: "p1", KeyDays: 30, Name: "Pro <b>Monthly</b>",
		Description: "Every feature, for 30 days from first use."}, p, "markup is escaped where shown, not refused")
	require.Equal(t, []string{"price_old"}, c.Unnamed(), "the prices start-up and doctor warn about")
	require.Nil(t, (*catalog.Catalog)(nil).Unnamed())

	for name, tc := range map[string]struct{ entry, want string }{
		"empty name":        {`name: ""`, `price "p": name must be 1 to 100 characters (it has 0)`},
		"long name":         {"name: " + strings.Repeat("n", 101), `price "p": name must be 1 to 100 characters (it has 101)`},
		"two-line name":     {`name: "Pro\nBcc: x@example.com"`, `price "p": name must be one line`},
		"long description":  {"description: " + strings.Repeat("d", 501), `price "p": description must be 1 to 500 characters`},
		"misspelt field":    {"nmae: Pro", "nmae"},
		"name not a string": {"name: [Pro]", "cannot unmarshal"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := catalog.Parse(strings.NewReader("prices:\n  p:\n    project_id: p1\n    key_days: 30\n    " + tc.entry + "\n"))
			require.ErrorContains(t, err, tc.want)
		})
	}
}
