package postgres_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"fulfiller/internal/postgres"
	"fulfiller/internal/postgres/postgrestest"
)

func record(t *testing.T, pool *pgxpool.Pool, events ...postgres.Event) []bool {
	t.Helper()
	var isNew []bool
	require.NoError(t, pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		var err error
		isNew, err = postgres.RecordEvents(context.Background(), tx, events)
		return err
	}))
	return isNew
}

func TestEventsAreStoredByteForByte(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	created := time.Unix(1705312800, 0)
	payloads := map[string][]byte{
		// jsonb would refuse the NUL escape, and rewrite spacing, key order,
		// duplicate keys and escapes.
		"evt_nul":      []byte(`{"id":"evt_nul", "data":{"object":{"note":"a\u0000b"}}}`),
		"evt_layout":   []byte("{\n  \"z\": 1,\n  \"a\": \"\\u00e9\\ud800\",\n  \"a\": 2.50\n}"),
		"evt_not_utf8": []byte("{\"x\":\"\xff\xfe\"}"),
		"evt_all_bytes": func() []byte {
			b := make([]byte, 256)
			for i := range b {
				b[i] = byte(i)
			}
			return b
		}(),
	}
	var events []postgres.Event
	for id, p := range payloads {
		events = append(events, postgres.Event{ID: id, Type: "customer.created", APIVersion: "2023-10-16",
			ObjectID: "cus_1", CreatedAt: created, Payload: p})
	}
	require.Equal(t, []bool{true, true, true, true}, record(t, pool, events...))
	for id, p := range payloads {
		got, err := postgres.EventPayload(ctx, pool, id)
		require.NoError(t, err, id)
		require.Equal(t, p, got, id)
	}
	e, err := postgres.GetEvent(ctx, pool, "evt_nul")
	require.NoError(t, err)
	require.Equal(t, "customer.created", e.Type)
	require.Equal(t, "2023-10-16", e.APIVersion)
	require.Equal(t, "cus_1", e.ObjectID)
	require.True(t, created.Equal(e.CreatedAt))
	require.False(t, e.Handled)

	_, err = postgres.EventPayload(ctx, pool, "evt_never")
	require.ErrorContains(t, err, "no stripe event evt_never")
}

func TestRecordEventsReportsRepeats(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ev := func(id string) postgres.Event {
		return postgres.Event{ID: id, Type: "customer.created", CreatedAt: time.Now(), Payload: []byte(`{}`)}
	}
	require.Equal(t, []bool{true, true, false}, record(t, pool, ev("evt_b"), ev("evt_a"), ev("evt_b")),
		"a second copy in the batch is a repeat")
	require.Equal(t, []bool{false, true}, record(t, pool, ev("evt_a"), ev("evt_c")))
}

// Events recorded while the payload was jsonb keep their content: the
// migration turns each into its JSON text.
func TestMigrationConvertsRecordedPayloads(t *testing.T) {
	t.Parallel()
	pool := postgrestest.NewPool(t)
	ctx := context.Background()
	// Back to the schema before the migration, with an event recorded then.
	_, err := pool.Exec(ctx, `
		ALTER TABLE stripe_events ALTER COLUMN payload TYPE jsonb USING convert_from(payload, 'UTF8')::jsonb;
		DELETE FROM fulfiller_migrations WHERE version = 4;
		INSERT INTO stripe_events (id, type, api_version, livemode, object_id, created_at, handled, payload)
		VALUES ('evt_old', 'invoice.paid', '2023-10-16', false, 'in_1', now(), true,
		        '{"id": "evt_old", "data": {"object": {"id": "in_1", "object": "invoice", "customer_name": "Zoë"}}}')`)
	require.NoError(t, err)

	require.NoError(t, postgres.Migrate(ctx, pool, slog.New(slog.DiscardHandler)))

	var columnType string
	require.NoError(t, pool.QueryRow(ctx, `SELECT data_type FROM information_schema.columns
		WHERE table_name = 'stripe_events' AND column_name = 'payload'`).Scan(&columnType))
	require.Equal(t, "bytea", columnType)
	payload, err := postgres.EventPayload(ctx, pool, "evt_old")
	require.NoError(t, err)
	var body struct {
		ID   string
		Data struct{ Object map[string]any }
	}
	require.NoError(t, json.Unmarshal(payload, &body), string(payload))
	require.Equal(t, "evt_old", body.ID)
	require.Equal(t, map[string]any{"id": "in_1", "object": "invoice", "customer_name": "Zoë"}, body.Data.Object)
}
