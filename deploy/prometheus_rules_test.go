package deploy

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

const rulesFile = "prometheus/fulfiller-rules.yml"

// ruleFile is Prometheus' rule file format; decoding it strictly fails on
// a misspelled field, as Prometheus does.
type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval,omitempty"`
		Rules    []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert         string            `json:"alert,omitempty"`
	Record        string            `json:"record,omitempty"`
	Expr          string            `json:"expr"`
	For           string            `json:"for,omitempty"`
	KeepFiringFor string            `json:"keep_firing_for,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

func readRules(t *testing.T) []rule {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	require.NoError(t, err)
	var f ruleFile
	require.NoError(t, yaml.UnmarshalStrict(raw, &f), rulesFile)
	var rules []rule
	for _, g := range f.Groups {
		require.NotEmpty(t, g.Name)
		rules = append(rules, g.Rules...)
	}
	require.NotEmpty(t, rules)
	return rules
}

// operatingAnchors reads docs/operating.md's headings: the anchors a link
// to a section can name, and the headings of its "## Alerts" section.
func operatingAnchors(t *testing.T) (anchors map[string]bool, alertSections []string) {
	t.Helper()
	f, err := os.Open("../docs/operating.md")
	require.NoError(t, err)
	defer func() { _ = f.Close() }() // read only
	anchors = map[string]bool{}
	inAlerts, inCode := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		level, title, _ := strings.Cut(line, " ")
		anchors[headingAnchor(title)] = true
		if level == "##" {
			inAlerts = title == "Alerts"
		}
		if level == "###" && inAlerts {
			alertSections = append(alertSections, title)
		}
	}
	require.NoError(t, sc.Err())
	return anchors, alertSections
}

// headingAnchor is the anchor GitHub gives a heading: lower case, spaces
// to hyphens, punctuation other than hyphens and underscores dropped.
func headingAnchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(title)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

var runbookLink = regexp.MustCompile(`docs/operating\.md#([a-z0-9_-]+)`)

// Every alert waits (for:), says how bad it is and what to do, and links
// to its runbook entry in docs/operating.md, which exists; every entry of
// the runbook is an alert.
func TestAlertingRulesAreCompleteAndLinkTheirRunbook(t *testing.T) {
	t.Parallel()
	anchors, sections := operatingAnchors(t)
	require.NotEmpty(t, sections, `docs/operating.md has no "## Alerts" section with a "###" entry per alert`)
	var alerts []string
	for _, r := range readRules(t) {
		require.NotEmpty(t, r.Alert, "%s holds alerts only: %q", rulesFile, r.Expr)
		require.NotContains(t, alerts, r.Alert, "two alerts named %s", r.Alert)
		alerts = append(alerts, r.Alert)
		require.NotEmpty(t, r.For, "%s has no for:", r.Alert)
		_, err := model.ParseDuration(r.For)
		require.NoError(t, err, "%s: for: %q", r.Alert, r.For)
		require.Contains(t, []string{"critical", "warning"}, r.Labels["severity"], "%s's severity label", r.Alert)

		for _, name := range []string{"summary", "description", "runbook"} {
			text := r.Annotations[name]
			require.NotEmpty(t, text, "%s has no %s annotation", r.Alert, name)
			// Prometheus expands annotations as Go templates, with
			// $labels and $value defined first.
			_, err := template.New(r.Alert).Funcs(alertTemplateFuncs).Parse("{{$labels := .Labels}}{{$value := .Value}}" + text)
			require.NoError(t, err, "%s's %s", r.Alert, name)
		}
		want := "docs/operating.md#" + headingAnchor(r.Alert)
		require.Equal(t, want, r.Annotations["runbook"], "%s's runbook is its own entry under docs/operating.md's Alerts", r.Alert)
		require.Contains(t, r.Annotations["description"], want, "%s's description links its runbook", r.Alert)
		for _, text := range r.Annotations {
			for _, m := range runbookLink.FindAllStringSubmatch(text, -1) {
				require.True(t, anchors[m[1]], "%s links docs/operating.md#%s, which no heading has", r.Alert, m[1])
			}
		}
	}
	slices.Sort(alerts)
	slices.Sort(sections)
	require.Equal(t, alerts, sections, "docs/operating.md's Alerts section has one entry per alert, named after it")
}

// Every metric a rule names is one the service serves: a rule on a
// renamed or misspelled metric never fires.
func TestAlertingRulesNameServedMetrics(t *testing.T) {
	t.Parallel()
	served := servedMetrics(t)
	for _, r := range readRules(t) {
		requireServed(t, served, r.Alert, r.Expr)
	}
}

// alertTemplateFuncs are the functions Prometheus' templates offer that
// the annotations use; parsing fails on any other.
var alertTemplateFuncs = template.FuncMap{
	"humanize":           func(any) string { return "" },
	"humanizeDuration":   func(any) string { return "" },
	"humanizePercentage": func(any) string { return "" },
	"humanizeTimestamp":  func(any) string { return "" },
	"title":              func(string) string { return "" },
	"toUpper":            func(string) string { return "" },
	"toLower":            func(string) string { return "" },
}
