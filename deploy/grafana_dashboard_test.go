package deploy

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const dashboardFile = "grafana/fulfiller.json"

type dashboardPanel struct {
	ID         int              `json:"id"`
	Type       string           `json:"type"`
	Title      string           `json:"title"`
	Datasource *panelDatasource `json:"datasource"`
	GridPos    struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Targets []struct {
		Expr       string           `json:"expr"`
		Datasource *panelDatasource `json:"datasource"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"` // a collapsed row's
}

type panelDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashboard struct {
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []dashboardPanel `json:"panels"`
}

// readDashboard returns the dashboard and its panels that query, rows
// left out and collapsed rows' panels taken in.
func readDashboard(t *testing.T) (dashboard, []dashboardPanel) {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(raw, &d), dashboardFile)
	var panels []dashboardPanel
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			panels = append(panels, p)
		}
	}
	walk(d.Panels)
	require.NotEmpty(t, panels)
	return d, panels
}

// The dashboard imports into any Grafana: every query goes to the
// Prometheus data source picked in its variable, never to a data source
// UID of one installation; panels have IDs of their own and do not
// overlap.
func TestGrafanaDashboardQueriesTheChosenDataSource(t *testing.T) {
	t.Parallel()
	d, panels := readDashboard(t)
	require.NotEmpty(t, d.UID)
	var variables []string
	for _, v := range d.Templating.List {
		if v.Type == "datasource" {
			require.Equal(t, "prometheus", v.Query, "the %s variable lists Prometheus data sources", v.Name)
			variables = append(variables, "${"+v.Name+"}")
		}
	}
	require.Len(t, variables, 1, "one data source variable")
	ids := map[int]string{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	for _, p := range panels {
		require.NotEmpty(t, p.Title)
		require.NotNil(t, p.Datasource, p.Title)
		require.Equal(t, panelDatasource{Type: "prometheus", UID: variables[0]}, *p.Datasource, p.Title)
		for _, target := range p.Targets {
			if target.Datasource != nil {
				require.Equal(t, panelDatasource{Type: "prometheus", UID: variables[0]}, *target.Datasource, p.Title)
			}
		}
		require.Empty(t, ids[p.ID], "panels %q and %q share ID %d", ids[p.ID], p.Title, p.ID)
		ids[p.ID] = p.Title
		require.Positive(t, p.GridPos.W, p.Title)
		require.Positive(t, p.GridPos.H, p.Title)
		require.LessOrEqual(t, p.GridPos.X+p.GridPos.W, 24, "%s is wider than the dashboard", p.Title)
		for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
			for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
				require.Empty(t, taken[cell{x, y}], "%s overlaps %s", p.Title, taken[cell{x, y}])
				taken[cell{x, y}] = p.Title
			}
		}
	}
}

// Every query names metrics the service serves, so no panel stays empty
// for a typo; and every metric of the service has a panel.
func TestGrafanaDashboardUsesServedMetrics(t *testing.T) {
	t.Parallel()
	_, panels := readDashboard(t)
	served := servedMetrics(t)
	used := map[string]bool{}
	for _, p := range panels {
		require.NotEmpty(t, p.Targets, p.Title)
		for _, target := range p.Targets {
			for _, family := range requireServed(t, served, p.Title, target.Expr) {
				used[family] = true
			}
		}
	}
	for family := range served {
		if strings.HasPrefix(family, "fulfiller_") {
			require.True(t, used[family], "the dashboard shows nothing of %s", family)
		}
	}
}
