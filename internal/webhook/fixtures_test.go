package webhook_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/stripeapi/stripespec"
)

// TestEventFixturesAreStripesEvents checks every webhook fixture against
// Stripe's own OpenAPI spec of 2023-10-16: the event itself, and its
// data.object against the object type it names. A field the service reads
// that Stripe does not send, or types differently, fails here instead of
// in production.
func TestEventFixturesAreStripesEvents(t *testing.T) {
	t.Parallel()
	spec := stripespec.Load(t)
	files, err := filepath.Glob(filepath.Join("testdata", "events", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			require.NoError(t, err)
			var event map[string]any
			require.NoError(t, json.Unmarshal(raw, &event))
			require.Empty(t, spec.Check("event", event))
			obj := event["data"].(map[string]any)["object"].(map[string]any)
			kind, _ := obj["object"].(string)
			require.NotEmpty(t, kind, "the event's object names its type")
			require.Empty(t, spec.Check(kind, obj))
		})
	}
}
