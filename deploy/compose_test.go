package deploy

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"fulfiller/internal/catalog"
)

// composeFile is the part of the Compose specification this file uses;
// decoded strictly, a misspelled field fails.
type composeFile struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
	Volumes  map[string]*struct{}      `json:"volumes"`
}

type composeService struct {
	Image string `json:"image"`
	Build *struct {
		Context    string `json:"context"`
		Dockerfile string `json:"dockerfile"`
	} `json:"build,omitempty"`
	Command  []string `json:"command,omitempty"`
	Profiles []string `json:"profiles,omitempty"`
	Restart  string   `json:"restart,omitempty"`
	Deploy   *struct {
		Replicas int `json:"replicas"`
	} `json:"deploy,omitempty"`
	DependsOn map[string]struct {
		Condition string `json:"condition"`
		Required  *bool  `json:"required,omitempty"`
	} `json:"depends_on,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
	Volumes     []string          `json:"volumes,omitempty"`
	Ports       []string          `json:"ports,omitempty"`
	Healthcheck *struct {
		Test        []string `json:"test"`
		Interval    string   `json:"interval,omitempty"`
		Timeout     string   `json:"timeout,omitempty"`
		Retries     int      `json:"retries,omitempty"`
		StartPeriod string   `json:"start_period,omitempty"`
	} `json:"healthcheck,omitempty"`
	StopGracePeriod string   `json:"stop_grace_period,omitempty"`
	ReadOnly        bool     `json:"read_only,omitempty"`
	CapDrop         []string `json:"cap_drop,omitempty"`
	SecurityOpt     []string `json:"security_opt,omitempty"`
}

// The service names the checks rely on.
const (
	composeReplicas = "fulfiller"
	composeMigrate  = "migrate"
	composeSandbox  = "luarmor-sandbox"
	composeDatabase = "postgres"
)

func decodeCompose(data []byte) (*composeFile, error) {
	var f composeFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("docker-compose.yml: %w", err)
	}
	return &f, nil
}

func loadCompose(t *testing.T) *composeFile {
	t.Helper()
	data, err := os.ReadFile("docker-compose.yml")
	require.NoError(t, err)
	f, err := decodeCompose(data)
	require.NoError(t, err)
	for _, name := range []string{composeReplicas, composeMigrate, composeSandbox, composeDatabase} {
		require.Contains(t, f.Services, name, "docker-compose.yml: service %s", name)
	}
	return f
}

// ourImage is the image compose builds from deploy/Dockerfile.
func (f *composeFile) ourImage(t *testing.T) string {
	t.Helper()
	img := f.Services[composeReplicas].Image
	require.NotEmpty(t, img)
	return img
}

// envExample reads .env.example: NAME=value lines, # comments.
func envExample(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(".env.example")
	require.NoError(t, err)
	defer func() { _ = f.Close() }() // read only
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		require.True(t, ok, ".env.example: %q is not NAME=value", line)
		require.NotContains(t, env, name, ".env.example: %s twice", name)
		env[name] = value
	}
	require.NoError(t, sc.Err())
	return env
}

// variable is one ${NAME}, ${NAME:-default}, ${NAME-default},
// ${NAME:?error} or ${NAME?error} of the Compose specification.
var variable = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}`)

// interpolate substitutes variables as docker compose does, from env.
func interpolate(s string, env map[string]string) (string, error) {
	var err error
	out := variable.ReplaceAllStringFunc(s, func(ref string) string {
		m := variable.FindStringSubmatch(ref)
		value, set := env[m[1]]
		unset := !set || (value == "" && strings.HasPrefix(m[2], ":"))
		switch strings.TrimPrefix(m[2], ":") {
		case "-":
			if unset {
				return m[3]
			}
		case "?":
			if unset && err == nil {
				err = fmt.Errorf("%s: %s", m[1], m[3])
			}
		}
		return value
	})
	return out, err
}

func TestInterpolateFollowsCompose(t *testing.T) {
	env := map[string]string{"SET": "v", "EMPTY": ""}
	for in, want := range map[string]string{
		"${SET}":          "v",
		"a${SET}b":        "avb",
		"${EMPTY:-d}":     "d",
		"${EMPTY-d}":      "",
		"${MISSING-d}":    "d",
		"${MISSING:-d/1}": "d/1",
		"${SET:?needed}":  "v",
	} {
		got, err := interpolate(in, env)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	_, err := interpolate("${EMPTY:?set EMPTY}", env)
	require.ErrorContains(t, err, "set EMPTY")
	_, err = interpolate("${MISSING?set it}", env)
	require.ErrorContains(t, err, "set it")
}

// composeVariables lists the variables a compose file refers to.
func composeVariables(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("docker-compose.yml")
	require.NoError(t, err)
	var names []string
	for _, m := range variable.FindAllStringSubmatch(string(data), -1) {
		if !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	slices.Sort(names)
	return names
}

// interpolatedEnv is a service's environment with .env.example's values.
func interpolatedEnv(t *testing.T, s composeService) map[string]string {
	t.Helper()
	example := envExample(t)
	env := map[string]string{}
	for k, v := range s.Environment {
		got, err := interpolate(v, example)
		require.NoError(t, err, "docker-compose.yml %s with .env.example", k)
		env[k] = got
	}
	return env
}

func TestComposeMigratesOnceThenStartsTwoReplicas(t *testing.T) {
	f := loadCompose(t)
	db := f.Services[composeDatabase]
	require.NotNil(t, db.Healthcheck, "PostgreSQL needs a healthcheck for service_healthy")
	require.NotEmpty(t, db.Healthcheck.Test)

	migrate := f.Services[composeMigrate]
	require.Equal(t, []string{"migrate"}, migrate.Command)
	require.Equal(t, "no", migrate.Restart, "a one-shot: its exit is what the replicas wait for")
	require.Equal(t, "service_healthy", migrate.DependsOn[composeDatabase].Condition)

	replicas := f.Services[composeReplicas]
	require.Equal(t, []string{"serve"}, replicas.Command)
	require.NotNil(t, replicas.Deploy)
	require.Equal(t, 2, replicas.Deploy.Replicas)
	require.Equal(t, "service_completed_successfully", replicas.DependsOn[composeMigrate].Condition)
	require.Equal(t, "service_healthy", replicas.DependsOn[composeDatabase].Condition)
	// Two replicas publishing one host port would collide: a range, one
	// host port each.
	require.Len(t, replicas.Ports, 1)
	hostPorts := strings.Split(replicas.Ports[0], ":")
	require.Len(t, hostPorts, 3, "ports: HOST_IP:FIRST-LAST:CONTAINER")
	var first, last int
	_, err := fmt.Sscanf(hostPorts[1], "%d-%d", &first, &last)
	require.NoError(t, err, "ports: a host port range, one port per replica")
	require.Equal(t, replicas.Deploy.Replicas, last-first+1)
	require.Equal(t, portOf(t, interpolatedEnv(t, replicas)["LISTEN_ADDR"]), hostPorts[2], "the published container port must be LISTEN_ADDR's")

	for name, s := range f.Services {
		if s.Image == f.ourImage(t) {
			require.NotNil(t, s.Build, "%s: build the image from deploy/Dockerfile", name)
			require.Equal(t, "deploy/Dockerfile", s.Build.Dockerfile, name)
			require.True(t, s.ReadOnly, "%s: read-only root filesystem", name)
			require.Contains(t, s.CapDrop, "ALL", name)
		}
	}
}

func TestComposeSandboxIsAProfileTheReplicasMayUse(t *testing.T) {
	f := loadCompose(t)
	sandbox := f.Services[composeSandbox]
	require.Equal(t, []string{"sandbox"}, sandbox.Profiles)
	require.Equal(t, "luarmor-sandbox", sandbox.Command[0])
	require.NotNil(t, sandbox.Healthcheck)
	for _, p := range sandbox.Ports {
		require.True(t, strings.HasPrefix(p, "127.0.0.1:"), "the sandbox is published on the loopback only: %s", p)
	}
	dep, ok := f.Services[composeReplicas].DependsOn[composeSandbox]
	require.True(t, ok, "with the profile, the replicas wait for the sandbox")
	require.Equal(t, "service_healthy", dep.Condition)
	require.NotNil(t, dep.Required)
	require.False(t, *dep.Required, "without the profile, the replicas start without the sandbox")

	// .env.example tries the sandbox: the replicas' Luarmor base URL is
	// the sandbox's address inside compose.
	env := interpolatedEnv(t, f.Services[composeReplicas])
	listen := sandbox.Command[slices.Index(sandbox.Command, "--addr")+1]
	require.Equal(t, "http://"+composeSandbox+":"+portOf(t, listen), env["LUARMOR_BASE_URL"])
}

func TestComposeEnvironmentNamesAreKnownSettings(t *testing.T) {
	f := loadCompose(t)
	for name, s := range f.Services {
		if s.Image != f.ourImage(t) {
			continue // PostgreSQL's own settings
		}
		var names []string
		for k := range s.Environment {
			names = append(names, k)
		}
		requireKnownSettings(t, "docker-compose.yml service "+name, names)
	}
}

func TestEnvExampleDefinesExactlyTheComposeVariables(t *testing.T) {
	var defined []string
	for name := range envExample(t) {
		defined = append(defined, name)
	}
	slices.Sort(defined)
	require.Equal(t, composeVariables(t), defined, ".env.example must define every variable docker-compose.yml uses, and no other")
}

func TestComposeSettingsFromTheEnvExampleStartTheService(t *testing.T) {
	f := loadCompose(t)
	replicas := f.Services[composeReplicas]
	env := interpolatedEnv(t, replicas)
	for _, name := range requiredSettings(t) {
		require.NotEmpty(t, env[name], "docker-compose.yml: required setting %s", name)
	}
	cfg, err := parseSettings(env)
	require.NoError(t, err, "the replicas' settings with .env.example's values")

	grace, err := time.ParseDuration(replicas.StopGracePeriod)
	require.NoError(t, err, "stop_grace_period must be set; the default 10 s is below SHUTDOWN_TIMEOUT")
	require.Greater(t, grace, cfg.ShutdownTimeout+httpShutdownMargin,
		"stop_grace_period must exceed SHUTDOWN_TIMEOUT (%s) plus the HTTP drain (%s)", cfg.ShutdownTimeout, httpShutdownMargin)

	// The catalog mounted at CATALOG_FILE parses with the service's parser.
	var source string
	for _, v := range replicas.Volumes {
		v, err = interpolate(v, envExample(t))
		require.NoError(t, err)
		if parts := strings.Split(v, ":"); len(parts) >= 2 && parts[1] == cfg.CatalogFile {
			source = parts[0]
		}
	}
	require.NotEmpty(t, source, "docker-compose.yml: nothing is mounted at CATALOG_FILE %s", cfg.CatalogFile)
	c, err := catalog.Load(filepath.FromSlash(source))
	require.NoError(t, err, "the catalog .env.example mounts")
	require.Positive(t, c.Len())
}

func TestComposeKeepsTheInternalListenerOffTheHost(t *testing.T) {
	f := loadCompose(t)
	replicas := f.Services[composeReplicas]
	env := interpolatedEnv(t, replicas)
	require.NotEmpty(t, env["ADMIN_ADDR"], "docker-compose.yml: the replicas must set ADMIN_ADDR")
	require.NotContains(t, env, "METRICS_ADDR", "METRICS_ADDR is ADMIN_ADDR's former name; set ADMIN_ADDR only")
	cfg, err := parseSettings(env)
	require.NoError(t, err)
	host, adminPort, err := net.SplitHostPort(cfg.AdminAddr)
	require.NoError(t, err, "the internal listener must be on (ADMIN_ADDR %q): the image's HEALTHCHECK asks it", cfg.AdminAddr)
	require.Contains(t, []string{"", "0.0.0.0", "::"}, host, "ADMIN_ADDR %q: all interfaces, so containers on the compose network reach it", cfg.AdminAddr)

	for _, p := range replicas.Ports {
		require.NotEqual(t, adminPort, containerPortOf(t, p), "docker-compose.yml publishes the internal listener (%s) on the host", p)
	}
	// Without a healthcheck of its own the service runs the image's,
	// healthprobe, which reads ADMIN_ADDR; one of its own must ask the
	// internal listener too.
	if hc := replicas.Healthcheck; hc != nil {
		require.Contains(t, strings.Join(hc.Test, " "), ":"+adminPort+"/", "the replicas' healthcheck must probe the internal listener")
	}
}

// containerPortOf is the container side of a short-syntax ports entry
// ([HOST_IP:][HOST:]CONTAINER[/PROTOCOL]).
func containerPortOf(t *testing.T, entry string) string {
	t.Helper()
	container := entry[strings.LastIndex(entry, ":")+1:]
	container, _, _ = strings.Cut(container, "/")
	require.NotEmpty(t, container, "ports entry %q", entry)
	return container
}
