package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/jobs"
	"fulfiller/internal/postgres/postgrestest"
)

func TestStockDeleteRefusesAPriceWithNoStockThatTheCatalogDoesNotList(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	env := envOf(map[string]string{
		"DATABASE_URL": pool.Config().ConnString(), "STRIPE_WEBHOOK_SECRET": testWebhookSecret, "STRIPE_API_KEY": "sk_test_x",
		"LUARMOR_API_KEY": "k", "CATALOG_FILE": "../../catalog.example.yaml",
	})
	var out strings.Builder
	err := run(context.Background(), []string{"stock", "delete", "price_nope", "--wait", "1s"}, env, &out, io.Discard)
	require.EqualError(t, err, "stock delete: price price_nope has no unsold stock keys and the catalog (../../catalog.example.yaml) does not list it, "+
		"so there is nothing to delete; check the price ID against `fulfiller stock list`")
	require.NotContains(t, out.String(), "done")

	// No job of any kind (rivertest asks about one kind at a time).
	require.Zero(t, count(t, pool, `SELECT count(*) FROM river_job`), "nothing queued for an unknown price")

	// A price the catalog lists is queued as before (no service runs here
	// to carry it out).
	out.Reset()
	err = run(context.Background(), []string{"stock", "delete", "price_dev_monthly", "--wait", "1s"}, env, &out, io.Discard)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "does not list it")
	require.Contains(t, out.String(), "deletion of the stock of price_dev_monthly queued")
	queued := rivertest.RequireInserted(context.Background(), t, riverpgxv5.New(pool), &jobs.DeleteStockArgs{}, nil)
	require.Equal(t, "price_dev_monthly", queued.Args.PriceID)
}
