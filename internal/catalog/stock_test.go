package catalog_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/catalog"
)

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
