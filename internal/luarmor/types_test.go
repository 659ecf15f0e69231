package luarmor_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/luarmor"
)

// serveFixture answers every request with a fixture of testdata/.
func serveFixture(t *testing.T, name string) *luarmor.Client {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return setupServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
}

func i64(n int64) *int64 { return &n }

func TestKeyStatsDecodesTheClientsShape(t *testing.T) {
	t.Parallel()
	st, err := serveFixture(t, "key_stats.json").KeyStats(context.Background(), false)
	require.NoError(t, err)
	require.Equal(t, luarmor.ExecutionData{Frequency: i64(86400), Executions: []int64{120, 98, 143, 0, 77}}, st.ExecutionData)
	require.Equal(t, luarmor.UsageStats{
		Obfuscations: i64(812), Scripts: i64(3), Users: i64(4210), AttacksBlocked: i64(57), ResetAt: i64(1767225600),
		Default: luarmor.PlanDefaults{Scripts: i64(10), Users: i64(50000), Obfuscations: i64(1000)},
	}, st.Stats)
	limit, ok := st.UserLimit()
	require.True(t, ok)
	require.Equal(t, int64(50000), limit)
}

func TestKeyStatsWithoutUsersLeavesThemUnknown(t *testing.T) {
	t.Parallel()
	st, err := serveFixture(t, "key_stats_no_users.json").KeyStats(context.Background(), true)
	require.NoError(t, err)
	require.Nil(t, st.Stats.Users, "noUsers omits the count: unknown, not zero")
	require.Equal(t, i64(812), st.Stats.Obfuscations)
	require.Equal(t, i64(50000), st.Stats.Default.Users)
}

func TestKeyStatsReadsTheFlatShapeOfLuarmorTS(t *testing.T) {
	t.Parallel()
	st, err := serveFixture(t, "key_stats_flat.json").KeyStats(context.Background(), false)
	require.NoError(t, err)
	require.Equal(t, i64(4210), st.Stats.Users)
	require.Equal(t, i64(50000), st.Stats.Default.Users)
	require.Nil(t, st.ExecutionData.Frequency)
	require.Empty(t, st.ExecutionData.Executions)
}

func TestKeyStatsDecodesLeniently(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		body      string
		users     *int64
		limit     int64
		limitKnow bool
	}{
		"floats and strings": {`{"success":true,"message":"Success!","stats":{"users":"12","default":{"users":500.0}}}`, i64(12), 500, true},
		"no default":         {`{"success":true,"message":"Success!","stats":{"users":12}}`, i64(12), 0, false},
		"zero limit":         {`{"success":true,"message":"Success!","stats":{"users":12,"default":{"users":0}}}`, i64(12), 0, false},
		"null and junk":      {`{"success":true,"message":"Success!","stats":{"users":null,"default":{"users":"lots"}},"execution_data":{"executions":[1,"x",2.5]}}`, nil, 0, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := setupServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(tc.body))
			})
			st, err := c.KeyStats(context.Background(), false)
			require.NoError(t, err)
			require.Equal(t, tc.users, st.Stats.Users)
			limit, ok := st.UserLimit()
			require.Equal(t, tc.limitKnow, ok)
			require.Equal(t, tc.limit, limit)
			if name == "null and junk" {
				require.Equal(t, []int64{1, 2}, st.ExecutionData.Executions)
			}
		})
	}
}

func TestKeyDetailsDecodesTheClientsShape(t *testing.T) {
	t.Parallel()
	d, err := serveFixture(t, "key_details.json").KeyDetails(context.Background())
	require.NoError(t, err)
	require.Equal(t, "p", d.Plan)
	require.Equal(t, 1, d.Enabled)
	require.Equal(t, int64(1798761600), d.ExpiresAt)
	require.Equal(t, []luarmor.Project{{
		Platform: "roblox", ID: "0123456789abcdef0123456789abcdef", Name: "Main project",
		Settings: luarmor.ProjectSettings{ResetHWIDCooldown: 86400},
		Scripts: []luarmor.Script{{ScriptID: "fedcba9876543210fedcba9876543210", ScriptName: "Loader",
			ScriptVersion: "1.4", Silent: true}},
	}}, d.Projects)
}
