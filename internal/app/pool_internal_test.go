package app

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// The pool keeps every connection open, ready for a burst, unless the
// connection string sizes its minimum itself.
func TestKeepPoolOpenUnlessTheURLSizesTheMinimum(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]int32{
		"postgres://u@db/shop?pool_max_conns=12":                  12,
		"postgres://u@db/shop?pool_max_conns=12&pool_min_conns=2": 2,
		"postgres://u@db/shop?pool_min_conns=0":                   0,
	} {
		cfg, err := pgxpool.ParseConfig(url)
		require.NoError(t, err)
		keepPoolOpen(cfg, url)
		require.Equal(t, want, cfg.MinConns, url)
	}
}
