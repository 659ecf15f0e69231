package postgres_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/order"
	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
)

// replanOrder records a paid order of two lines: two units of project
// "typo" and one of project "good".
func replanOrder(t *testing.T, pool *pgxpool.Pool, id string) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	units := map[string]int64{}
	tx(t, pool, func(tx pgx.Tx) error {
		_, err := postgres.UpsertOrder(ctx, tx, order.SessionDetails{CheckoutSessionID: id, Mode: "payment",
			PaymentStatus: "paid", SessionStatus: "complete", PaymentIntentID: "pi_" + id})
		if err != nil {
			return err
		}
		err = postgres.AddUnits(ctx, tx, id, []order.Line{
			{LineItemID: "li_typo", Quantity: 2, PriceID: "price_typo", ProjectID: "typo", KeyDays: 7},
			{LineItemID: "li_good", Quantity: 1, PriceID: "price_good", ProjectID: "good", KeyDays: 30},
		})
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT line_item_id || '/' || unit, id FROM order_keys WHERE checkout_session_id = $1`, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var name string
			var keyID int64
			if err := rows.Scan(&name, &keyID); err != nil {
				return err
			}
			units[name] = keyID
		}
		return rows.Err()
	})
	return units
}

func replanned(t *testing.T, pool *pgxpool.Pool, id string) map[int64]bool {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id, replan FROM order_keys WHERE checkout_session_id = $1`, id)
	require.NoError(t, err)
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var keyID int64
		var replan bool
		require.NoError(t, rows.Scan(&keyID, &replan))
		out[keyID] = replan
	}
	require.NoError(t, rows.Err())
	return out
}

// A unit refused for its project marks the order's undelivered units of
// that project to be planned again; a refusal for another reason marks
// nothing, and a retry plans again only what is marked.
func TestProjectRefusalMarksTheUnitsOfItsProjectToPlanAgain(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()

	other := replanOrder(t, pool, "cs_test_replanother")
	tx(t, pool, func(tx pgx.Tx) error {
		return postgres.FailKey(ctx, tx, other["li_typo/1"], "luarmor refused: Request refused.", false)
	})
	require.Equal(t, map[int64]bool{other["li_typo/1"]: false, other["li_typo/2"]: false, other["li_good/1"]: false},
		replanned(t, pool, "cs_test_replanother"))

	id := "cs_test_replanproject"
	units := replanOrder(t, pool, id)
	tx(t, pool, func(tx pgx.Tx) error {
		return postgres.FailKey(ctx, tx, units["li_typo/1"], "luarmor refused: Project not found!", true)
	})
	require.Equal(t, map[int64]bool{units["li_typo/1"]: true, units["li_typo/2"]: true, units["li_good/1"]: false},
		replanned(t, pool, id))

	// The operator's retry: the refused unit starts over, and the marked
	// units take the catalog's terms once.
	tx(t, pool, func(tx pgx.Tx) error {
		if err := postgres.ResetFailures(ctx, tx, id); err != nil {
			return err
		}
		prices, err := postgres.PricesToReplan(ctx, tx, id)
		require.NoError(t, err)
		require.Equal(t, []string{"price_typo"}, prices)
		if err := postgres.ReplanUnits(ctx, tx, id, "price_typo", "fixed", 14); err != nil {
			return err
		}
		return postgres.ReplanUnits(ctx, tx, id, "price_good", "elsewhere", 1)
	})
	o, err := postgres.GetOrder(ctx, pool, id)
	require.NoError(t, err)
	for _, k := range o.Keys {
		switch k.PriceID {
		case "price_typo":
			require.Equal(t, "fixed", k.ProjectID)
			require.Equal(t, 14, k.KeyDays)
		default:
			require.Equal(t, "good", k.ProjectID, "an unmarked unit keeps what it was sold with")
			require.Equal(t, 30, k.KeyDays)
		}
	}
	for keyID, marked := range replanned(t, pool, id) {
		require.False(t, marked, "unit %d planned again once", keyID)
	}
}

// Refusals recorded before the mark existed are read from their reason.
func TestMigrationMarksEarlierProjectRefusals(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `ALTER TABLE order_keys DROP COLUMN replan; DELETE FROM fulfiller_migrations WHERE version = 25`)
	require.NoError(t, err)
	project := replanOrder(t, pool, "cs_test_oldproject")
	other := replanOrder(t, pool, "cs_test_oldother")
	// The reasons as create_key recorded them.
	_, err = pool.Exec(ctx, `UPDATE order_keys SET status = 'failed', last_error = $2 WHERE id = $1`, project["li_typo/1"],
		"luarmor refused the key of project typo: luarmor: POST /v3/projects/{project_id}/users: HTTP 404 not_found: Project not found!")
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE order_keys SET status = 'failed', last_error = $2 WHERE id = $1`, other["li_typo/1"],
		"luarmor refused the key of project typo: luarmor: POST /v3/projects/{project_id}/users: HTTP 400 invalid_input: Request refused.")
	require.NoError(t, err)

	require.NoError(t, postgres.Migrate(ctx, pool, slog.New(slog.DiscardHandler)))

	require.Equal(t, map[int64]bool{project["li_typo/1"]: true, project["li_typo/2"]: true, project["li_good/1"]: false},
		replanned(t, pool, "cs_test_oldproject"))
	require.Equal(t, map[int64]bool{other["li_typo/1"]: false, other["li_typo/2"]: false, other["li_good/1"]: false},
		replanned(t, pool, "cs_test_oldother"), "the route names projects; only Luarmor's message counts")
}
