// Package deploy holds the deployment files (Dockerfile, docker compose,
// Kubernetes manifests) and the tests that check them against the service
// itself: its settings, its catalog parser, its shutdown and its probes,
// and the Grafana dashboard and alerting rules against the metrics it
// serves. Nothing here is run by these tests; they decode and compare, and
// the metrics checks run the service itself to read its /metrics.
package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/jobs"
)

// httpShutdownMargin is what a stopping replica spends beyond
// SHUTDOWN_TIMEOUT: the HTTP server gets up to 10 s to finish requests
// before running jobs get SHUTDOWN_TIMEOUT (app.Main.Close). A grace period
// shorter than both would SIGKILL a replica mid-call.
const httpShutdownMargin = 10 * time.Second

// setting is one row of docs/operating.md's configuration table.
type setting struct {
	name     string
	required bool
}

// settingRow matches a row of the table: | `NAME` | default | meaning |.
var settingRow = regexp.MustCompile("^\\| `([A-Z][A-Z0-9_]*)` \\| ([^|]*) \\|")

// knownSettings reads the settings the service documents in
// docs/operating.md's "## Configuration" table: internal/config reads them
// one by one and exports no list.
func knownSettings(t *testing.T) map[string]setting {
	t.Helper()
	f, err := os.Open("../docs/operating.md")
	require.NoError(t, err)
	defer func() { _ = f.Close() }() // read only
	settings := map[string]setting{}
	inSection := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			inSection = line == "## Configuration"
			continue
		}
		if m := settingRow.FindStringSubmatch(line); inSection && m != nil {
			settings[m[1]] = setting{name: m[1], required: strings.TrimSpace(m[2]) == "(required)"}
		}
	}
	require.NoError(t, sc.Err())
	// Guards the parser: a reworded table must not silently empty the
	// set every other check compares against.
	require.Greater(t, len(settings), 20, "docs/operating.md's Configuration table was not found or changed shape")
	for _, name := range []string{"DATABASE_URL", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_KEY", "LUARMOR_API_KEY"} {
		require.True(t, settings[name].required, "%s should be a required setting in docs/operating.md", name)
	}
	return settings
}

// requireKnownSettings fails for every name the service does not read.
func requireKnownSettings(t *testing.T, where string, names []string) {
	t.Helper()
	known := knownSettings(t)
	for _, name := range names {
		_, ok := known[name]
		require.True(t, ok, "%s sets %s, which is not a setting of the service (docs/operating.md, Configuration): a typo, or a setting that was removed", where, name)
	}
}

// requiredSettings lists the settings start-up refuses to go without.
func requiredSettings(t *testing.T) []string {
	var names []string
	for _, s := range knownSettings(t) {
		if s.required {
			names = append(names, s.name)
		}
	}
	slices.Sort(names)
	return names
}

// parseSettings runs the service's own parser on an environment.
func parseSettings(env map[string]string) (config.Config, error) {
	return config.FromEnv(func(k string) string { return env[k] })
}

// portOf is the port of a LISTEN_ADDR.
func portOf(t *testing.T, listenAddr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(listenAddr)
	require.NoError(t, err)
	return port
}

func TestKnownSettingsAreReadFromTheConfigurationTable(t *testing.T) {
	known := knownSettings(t)
	require.Contains(t, known, "SHUTDOWN_TIMEOUT")
	require.False(t, known["SHUTDOWN_TIMEOUT"].required)
	require.NotContains(t, known, "DEV_LUARMOR_ADDR", "only rows of the Configuration table count")
}

// dockerStage is one FROM ... section of the Dockerfile.
type dockerStage struct {
	from         string
	instructions []string // each instruction with its continuation lines joined
}

func dockerStages(t *testing.T) []dockerStage {
	t.Helper()
	data, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	var stages []dockerStage
	joined := strings.ReplaceAll(string(data), "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "FROM "); ok {
			stages = append(stages, dockerStage{from: strings.Fields(rest)[0]})
			continue
		}
		require.NotEmpty(t, stages, "Dockerfile: %q comes before any FROM", line)
		stages[len(stages)-1].instructions = append(stages[len(stages)-1].instructions, line)
	}
	require.GreaterOrEqual(t, len(stages), 2, "Dockerfile: a build stage and a runtime stage")
	return stages
}

func (s dockerStage) all(keyword string) []string {
	var out []string
	for _, in := range s.instructions {
		if rest, ok := strings.CutPrefix(in, keyword+" "); ok {
			out = append(out, strings.TrimSpace(rest))
		}
	}
	return out
}

// imageUser is the numeric user the runtime image runs as.
func imageUser(t *testing.T) int64 {
	t.Helper()
	stages := dockerStages(t)
	users := stages[len(stages)-1].all("USER")
	require.NotEmpty(t, users, "Dockerfile: the runtime stage sets no USER, so it runs as root")
	var uid, gid int64
	_, err := fmt.Sscanf(users[len(users)-1], "%d:%d", &uid, &gid)
	require.NoError(t, err, "Dockerfile: USER must be numeric uid:gid, so Kubernetes' runAsNonRoot can verify it")
	return uid
}

func TestImageRunsAsNonRoot(t *testing.T) {
	require.NotZero(t, imageUser(t), "Dockerfile: USER 0 is root")
}

func TestImageHasAHealthcheckItCanRun(t *testing.T) {
	stages := dockerStages(t)
	runtime := stages[len(stages)-1]
	checks := runtime.all("HEALTHCHECK")
	require.Len(t, checks, 1, "Dockerfile: the runtime stage needs one HEALTHCHECK")
	m := regexp.MustCompile(`CMD \["([^"]+)"`).FindStringSubmatch(checks[0])
	require.NotNil(t, m, "Dockerfile: HEALTHCHECK must use the exec form (the distroless image has no shell): %s", checks[0])
	probe := m[1]
	copied := false
	for _, c := range runtime.all("COPY") {
		f := strings.Fields(c)
		dest := f[len(f)-1]
		for _, src := range f[:len(f)-1] {
			if strings.HasSuffix(dest, "/") && dest+src[strings.LastIndex(src, "/")+1:] == probe {
				copied = true
			}
		}
	}
	require.True(t, copied, "Dockerfile: the HEALTHCHECK runs %s, which the runtime stage does not copy in", probe)
	require.Contains(t, strings.Join(stages[0].instructions, "\n"), "./deploy/healthprobe", "Dockerfile: the build stage must build the probe")
}

func TestImageIsStaticAndPinned(t *testing.T) {
	stages := dockerStages(t)
	build := strings.Join(stages[0].instructions, "\n")
	require.Contains(t, build, "CGO_ENABLED=0", "Dockerfile: a static binary for the libc-less runtime image")
	require.Contains(t, build, "-trimpath")
	for _, s := range stages {
		name, tag, ok := strings.Cut(s.from[strings.LastIndex(s.from, "/")+1:], ":")
		require.True(t, ok && tag != "" && tag != "latest", "Dockerfile: FROM %s must pin a tag", s.from)
		require.NotEmpty(t, name)
	}
}

func TestDocsSubscribeTheWebhookToEveryHandledEvent(t *testing.T) {
	data, err := os.ReadFile("README.md")
	require.NoError(t, err)
	doc := string(data)
	require.Contains(t, doc, "2023-10-16", "the endpoint's API version, the one stripe-go v76 is built for")
	// Every `stripe listen` the page shows (compose, and make run with the
	// real Stripe): a copied command must forward every handled type.
	lines := regexp.MustCompile(`--events ([a-z0-9_.,]+)`).FindAllStringSubmatch(doc, -1)
	require.NotEmpty(t, lines, "deploy/README.md: the `stripe listen --events ...` line is missing")
	for _, m := range lines {
		listed := strings.Split(m[1], ",")
		slices.Sort(listed)
		require.Equal(t, jobs.HandledTypes(), listed, "deploy/README.md's `stripe listen --events` must name exactly the handled event types")
	}
	for _, typ := range jobs.HandledTypes() {
		require.Contains(t, doc, "`"+typ+"`", "deploy/README.md: the dashboard steps must list %s", typ)
	}
}

// The checks above trust strict decoding to catch a misspelled field;
// prove that it does.
func TestStrictDecodingRefusesAMisspelledField(t *testing.T) {
	data, err := os.ReadFile("k8s/deployment.yaml")
	require.NoError(t, err)
	require.NoError(t, decodeManifest("deployment.yaml", data, &manifests{}))
	typo := bytes.Replace(data, []byte("readinessProbe:"), []byte("readinesProbe:"), 1)
	require.NotEqual(t, data, typo)
	require.ErrorContains(t, decodeManifest("deployment.yaml", typo, &manifests{}), "readinesProbe")

	compose, err := os.ReadFile("docker-compose.yml")
	require.NoError(t, err)
	_, err = decodeCompose(compose)
	require.NoError(t, err)
	_, err = decodeCompose(bytes.Replace(compose, []byte("depends_on:"), []byte("depend_on:"), 1))
	require.ErrorContains(t, err, "depend_on")
}
