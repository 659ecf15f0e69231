package deploy

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"fulfiller/internal/catalog"
)

// kustomization is the part of kustomize's Kustomization these manifests
// use; decoded strictly, a field kustomize does not know (or these tests
// do not check) fails.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
	} `json:"labels,omitempty"`
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
}

// manifests is every object under deploy/k8s, decoded into the official
// types.
type manifests struct {
	kustomization *kustomization
	deployment    *appsv1.Deployment
	job           *batchv1.Job
	service       *corev1.Service
	secret        *corev1.Secret
	pdb           *policyv1.PodDisruptionBudget
	configMaps    map[string]*corev1.ConfigMap // by name
	files         []string                     // every file under deploy/k8s, by name
	objects       map[string]metav1.Object     // every object but the kustomization, by file
}

const (
	settingsConfigMap = "fulfiller-settings"
	catalogConfigMap  = "fulfiller-catalog"
	// containerPortName is the public listener's (LISTEN_ADDR) port, the
	// one the Service exposes; adminPortName the internal listener's
	// (ADMIN_ADDR), the one only the kubelet and the pod network reach.
	containerPortName = "http"
	adminPortName     = "admin"
)

// decodeManifest decodes one file strictly into the type its apiVersion
// and kind name, and files it in m.
func decodeManifest(file string, data []byte, m *manifests) error {
	if bytes.Contains(data, []byte("\n---")) || bytes.HasPrefix(data, []byte("---")) {
		return fmt.Errorf("%s: one object per file (only the first document of a file would be checked)", file)
	}
	var head metav1.TypeMeta
	if err := yaml.Unmarshal(data, &head); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	strict := func(into any) error {
		if err := yaml.UnmarshalStrict(data, into); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		return nil
	}
	once := func(have bool) error {
		if have {
			return fmt.Errorf("%s: a second %s; the checks expect one", file, head.Kind)
		}
		return nil
	}
	if m.objects == nil {
		m.objects = map[string]metav1.Object{}
		m.configMaps = map[string]*corev1.ConfigMap{}
	}
	var obj metav1.Object
	switch head.APIVersion + " " + head.Kind {
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		if err := once(m.kustomization != nil); err != nil {
			return err
		}
		m.kustomization = &kustomization{}
		return strict(m.kustomization)
	case "apps/v1 Deployment":
		if err := once(m.deployment != nil); err != nil {
			return err
		}
		m.deployment = &appsv1.Deployment{}
		obj = m.deployment
	case "batch/v1 Job":
		if err := once(m.job != nil); err != nil {
			return err
		}
		m.job = &batchv1.Job{}
		obj = m.job
	case "v1 Service":
		if err := once(m.service != nil); err != nil {
			return err
		}
		m.service = &corev1.Service{}
		obj = m.service
	case "v1 Secret":
		if err := once(m.secret != nil); err != nil {
			return err
		}
		m.secret = &corev1.Secret{}
		obj = m.secret
	case "policy/v1 PodDisruptionBudget":
		if err := once(m.pdb != nil); err != nil {
			return err
		}
		m.pdb = &policyv1.PodDisruptionBudget{}
		obj = m.pdb
	case "v1 ConfigMap":
		cm := &corev1.ConfigMap{}
		if err := strict(cm); err != nil {
			return err
		}
		if m.configMaps[cm.Name] != nil {
			return fmt.Errorf("%s: a second ConfigMap %s", file, cm.Name)
		}
		m.configMaps[cm.Name] = cm
		m.objects[file] = cm
		return nil
	default:
		return fmt.Errorf("%s: %q %q is not a kind these checks know: decode it in decodeManifest", file, head.APIVersion, head.Kind)
	}
	if err := strict(obj); err != nil {
		return err
	}
	m.objects[file] = obj
	return nil
}

// loadManifests decodes every file under deploy/k8s.
func loadManifests(t *testing.T) *manifests {
	t.Helper()
	entries, err := os.ReadDir("k8s")
	require.NoError(t, err)
	m := &manifests{}
	for _, e := range entries {
		require.False(t, e.IsDir(), "deploy/k8s/%s: no subdirectories, every manifest is listed in kustomization.yaml", e.Name())
		require.Equal(t, ".yaml", path.Ext(e.Name()), "deploy/k8s/%s: manifests end in .yaml", e.Name())
		data, err := os.ReadFile("k8s/" + e.Name())
		require.NoError(t, err)
		require.NoError(t, decodeManifest(e.Name(), data, m))
		m.files = append(m.files, e.Name())
	}
	require.NotNil(t, m.kustomization, "deploy/k8s: kustomization.yaml")
	require.NotNil(t, m.deployment, "deploy/k8s: a Deployment")
	require.NotNil(t, m.job, "deploy/k8s: the migration Job")
	require.NotNil(t, m.service, "deploy/k8s: a Service")
	require.NotNil(t, m.secret, "deploy/k8s: the Secret example")
	require.NotNil(t, m.pdb, "deploy/k8s: a PodDisruptionBudget")
	require.Contains(t, m.configMaps, settingsConfigMap)
	require.Contains(t, m.configMaps, catalogConfigMap)
	return m
}

// secretStandIns are values of the right shape for every key of the
// Secret, to check the other settings with the service's parser.
var secretStandIns = map[string]string{
	"DATABASE_URL":          "postgres://fulfiller:x@postgres:5432/fulfiller",
	"STRIPE_WEBHOOK_SECRET": "whsec_standin_0123456789abcdef0123456789ab",
	"STRIPE_API_KEY":        "sk_test_standin",
	"LUARMOR_API_KEY":       "standin",
	"SHOP_API_TOKEN":        "standin_0123456789abcdef0123456789ab",
	"ADMIN_API_TOKEN":       "standin_admin_0123456789abcdef01234567",
}

// secretValues are the Secret's values as a pod sees them.
func (m *manifests) secretValues() map[string]string {
	out := map[string]string{}
	for k, v := range m.secret.Data {
		out[k] = string(v)
	}
	for k, v := range m.secret.StringData {
		out[k] = v
	}
	return out
}

// container is the Deployment's only container.
func (m *manifests) container(t *testing.T) corev1.Container {
	t.Helper()
	require.Len(t, m.deployment.Spec.Template.Spec.Containers, 1)
	return m.deployment.Spec.Template.Spec.Containers[0]
}

// port is the Deployment container's port of that name.
func (m *manifests) port(t *testing.T, name string) corev1.ContainerPort {
	t.Helper()
	for _, p := range m.container(t).Ports {
		if p.Name == name {
			return p
		}
	}
	require.Failf(t, "no container port", "the container needs a port named %s", name)
	return corev1.ContainerPort{}
}

// serverEnv is the environment of the Deployment's container, with the
// Secret's values replaced by replaceSecrets when given.
func (m *manifests) serverEnv(t *testing.T, replaceSecrets map[string]string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range m.container(t).EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm := m.configMaps[from.ConfigMapRef.Name]
			require.NotNil(t, cm, "the Deployment takes its environment from ConfigMap %s, which is not in deploy/k8s", from.ConfigMapRef.Name)
			for k, v := range cm.Data {
				env[k] = v
			}
		case from.SecretRef != nil:
			require.Equal(t, m.secret.Name, from.SecretRef.Name, "the Deployment takes its environment from a Secret that is not in deploy/k8s")
			values := m.secretValues()
			for k, v := range values {
				if replaceSecrets != nil {
					standIn, ok := replaceSecrets[k]
					require.True(t, ok, "no stand-in value for the Secret's %s: add one to secretStandIns", k)
					v = standIn
				}
				env[k] = v
			}
		}
	}
	for _, e := range m.container(t).Env {
		require.Nil(t, e.ValueFrom, "%s: the Deployment's values come from envFrom or are literal", e.Name)
		env[e.Name] = e.Value
	}
	return env
}

// serverSettings parses the Deployment's settings with the service's own
// parser, secrets replaced by stand-ins.
func (m *manifests) serverSettings(t *testing.T) map[string]string {
	t.Helper()
	env := m.serverEnv(t, secretStandIns)
	_, err := parseSettings(env)
	require.NoError(t, err, "the Deployment's settings (ConfigMap and env) do not start the service")
	return env
}

func TestKustomizationListsEveryManifestAndNothingElse(t *testing.T) {
	m := loadManifests(t)
	var manifestFiles []string
	for _, f := range m.files {
		if f != "kustomization.yaml" {
			manifestFiles = append(manifestFiles, f)
		}
	}
	listed := slices.Clone(m.kustomization.Resources)
	slices.Sort(listed)
	require.Equal(t, manifestFiles, listed, "deploy/k8s/kustomization.yaml resources must list every manifest file, each once")
}

func TestObjectsAreLabelledForTheRolloutOrder(t *testing.T) {
	// deploy/README.md applies config and migrate first (a label
	// selector), waits for the Job, then the rest.
	m := loadManifests(t)
	want := map[string]string{}
	for file, obj := range m.objects {
		switch obj.(type) {
		case *corev1.Secret, *corev1.ConfigMap:
			want[file] = "config"
		case *batchv1.Job:
			want[file] = "migrate"
		default:
			want[file] = "server"
		}
	}
	for file, obj := range m.objects {
		require.Equal(t, "fulfiller", obj.GetLabels()["app.kubernetes.io/name"], "%s: label app.kubernetes.io/name", file)
		require.Equal(t, want[file], obj.GetLabels()["app.kubernetes.io/component"], "%s: label app.kubernetes.io/component", file)
	}
}

func TestDeploymentRunsTwoReplicasProbedOnTheInternalPort(t *testing.T) {
	m := loadManifests(t)
	d := m.deployment
	require.NotNil(t, d.Spec.Replicas)
	require.EqualValues(t, 2, *d.Spec.Replicas)
	c := m.container(t)
	require.Equal(t, []string{"serve"}, c.Args, "the schema comes from the migration Job, not from each replica")

	settings := m.serverSettings(t)
	cfg, err := parseSettings(settings)
	require.NoError(t, err)
	public, admin := m.port(t, containerPortName), m.port(t, adminPortName)
	require.Equal(t, portOf(t, orDefault(settings["LISTEN_ADDR"], ":8080")), fmt.Sprint(public.ContainerPort), "the container port %s must be LISTEN_ADDR's", containerPortName)

	// The configmap names the internal listener by its current name, and
	// binds it on every interface: on the default loopback address the
	// kubelet's probes, which come from the node to the pod's IP, would
	// never reach it.
	require.NotEmpty(t, settings["ADMIN_ADDR"], "ConfigMap %s must set ADMIN_ADDR", settingsConfigMap)
	require.NotContains(t, settings, "METRICS_ADDR", "METRICS_ADDR is ADMIN_ADDR's former name; set ADMIN_ADDR only")
	host, adminPort, err := net.SplitHostPort(cfg.AdminAddr)
	require.NoError(t, err, "the internal listener must be on (ADMIN_ADDR %q): the probes ask it", cfg.AdminAddr)
	require.Contains(t, []string{"", "0.0.0.0", "::"}, host, "ADMIN_ADDR %q must bind all interfaces so the kubelet reaches it", cfg.AdminAddr)
	require.Equal(t, adminPort, fmt.Sprint(admin.ContainerPort), "the container port %s must be ADMIN_ADDR's", adminPortName)

	probes := map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe}
	wantPath := map[string]string{"readiness": "/readyz", "liveness": "/healthz", "startup": "/healthz"}
	for kind, p := range probes {
		require.NotNil(t, p, "%s probe", kind)
		require.NotNil(t, p.HTTPGet, "%s probe must be an HTTP GET", kind)
		require.Equal(t, wantPath[kind], p.HTTPGet.Path, "%s probe path", kind)
		require.True(t, targetsPort(p.HTTPGet.Port, admin), "%s probe must target the internal listener's port %s, not %s", kind, adminPortName, p.HTTPGet.Port.String())
		require.False(t, targetsPort(p.HTTPGet.Port, public), "%s probe: the public listener answers 404 to %s", kind, p.HTTPGet.Path)
	}
}

// targetsPort reports whether a probe's or Service's port names the
// container port, by name or number.
func targetsPort(p intstr.IntOrString, port corev1.ContainerPort) bool {
	if p.Type == intstr.String {
		return p.StrVal == port.Name
	}
	return p.IntVal == port.ContainerPort
}

func TestGracePeriodOutlastsTheShutdown(t *testing.T) {
	m := loadManifests(t)
	cfg, err := parseSettings(m.serverSettings(t))
	require.NoError(t, err)
	grace := m.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds
	require.NotNil(t, grace, "terminationGracePeriodSeconds must be set; the default 30 s is not above SHUTDOWN_TIMEOUT")
	require.Greater(t, time.Duration(*grace)*time.Second, cfg.ShutdownTimeout+httpShutdownMargin,
		"terminationGracePeriodSeconds must exceed SHUTDOWN_TIMEOUT (%s) plus the HTTP drain (%s)", cfg.ShutdownTimeout, httpShutdownMargin)
}

func TestPodsRunAsNonRootOnAReadOnlyRoot(t *testing.T) {
	m := loadManifests(t)
	uid := imageUser(t)
	pods := map[string]corev1.PodSpec{"Deployment": m.deployment.Spec.Template.Spec, "Job": m.job.Spec.Template.Spec}
	for owner, pod := range pods {
		require.NotNil(t, pod.SecurityContext, "%s: pod securityContext", owner)
		psc := pod.SecurityContext
		require.True(t, psc.RunAsNonRoot != nil && *psc.RunAsNonRoot, "%s: runAsNonRoot", owner)
		require.True(t, psc.RunAsUser != nil && *psc.RunAsUser == uid, "%s: runAsUser must be the image's USER %d", owner, uid)
		require.False(t, pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken, "%s: the service never calls the Kubernetes API; mount no token", owner)
		require.Len(t, pod.Containers, 1, owner)
		c := pod.Containers[0]
		sc := c.SecurityContext
		require.NotNil(t, sc, "%s: container securityContext", owner)
		require.True(t, sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, "%s: readOnlyRootFilesystem", owner)
		require.True(t, sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation, "%s: allowPrivilegeEscalation false", owner)
		require.True(t, sc.Capabilities != nil && slices.Contains(sc.Capabilities.Drop, "ALL"), "%s: drop all capabilities", owner)
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, ok := c.Resources.Requests[res]
			require.True(t, ok, "%s: request of %s", owner, res)
			limit, ok := c.Resources.Limits[res]
			require.True(t, ok, "%s: limit of %s", owner, res)
			require.LessOrEqual(t, req.Cmp(limit), 0, "%s: %s request above its limit", owner, res)
		}
	}
}

func TestEveryEnvironmentNameIsAKnownSetting(t *testing.T) {
	m := loadManifests(t)
	var names []string
	for name := range m.serverEnv(t, nil) {
		names = append(names, name)
	}
	requireKnownSettings(t, "the Deployment (its env, ConfigMap and Secret)", names)

	names = nil
	for _, e := range m.job.Spec.Template.Spec.Containers[0].Env {
		names = append(names, e.Name)
		if ref := e.ValueFrom; ref != nil {
			switch {
			case ref.SecretKeyRef != nil:
				require.Equal(t, m.secret.Name, ref.SecretKeyRef.Name, "Job %s", e.Name)
				require.Contains(t, m.secretValues(), ref.SecretKeyRef.Key, "Job %s: the Secret has no such key", e.Name)
			case ref.ConfigMapKeyRef != nil:
				cm := m.configMaps[ref.ConfigMapKeyRef.Name]
				require.NotNil(t, cm, "Job %s: no ConfigMap %s", e.Name, ref.ConfigMapKeyRef.Name)
				_, ok := cm.Data[ref.ConfigMapKeyRef.Key]
				optional := ref.ConfigMapKeyRef.Optional != nil && *ref.ConfigMapKeyRef.Optional
				require.True(t, ok || optional, "Job %s: the ConfigMap has no key %s and the reference is not optional", e.Name, ref.ConfigMapKeyRef.Key)
			default:
				t.Fatalf("Job %s: only Secret and ConfigMap references are checked", e.Name)
			}
		}
	}
	requireKnownSettings(t, "the migration Job", names)
}

func TestSecretHoldsEveryRequiredSettingAsAPlaceholder(t *testing.T) {
	m := loadManifests(t)
	values := m.secretValues()
	for _, name := range requiredSettings(t) {
		if _, ok := m.configMaps[settingsConfigMap].Data[name]; !ok {
			require.Contains(t, values, name, "required setting %s is in neither the Secret nor the settings ConfigMap", name)
		}
	}
	for k, v := range values {
		require.Contains(t, v, "REPLACE_ME", "the Secret example's %s must be a placeholder", k)
		_, ok := secretStandIns[k]
		require.True(t, ok, "no stand-in value for the Secret's %s: add one to secretStandIns", k)
	}
	// Applied unedited, the placeholders stop start-up with a line naming
	// the setting instead of running on fake credentials.
	_, err := parseSettings(m.serverEnv(t, nil))
	require.Error(t, err)
}

func TestCatalogConfigMapParsesAndIsWhereCATALOG_FILEPoints(t *testing.T) {
	m := loadManifests(t)
	settings := m.serverSettings(t)
	file := settings["CATALOG_FILE"]
	require.True(t, path.IsAbs(file), "CATALOG_FILE %q: an absolute path into the mounted ConfigMap", file)

	var mountedFrom string
	for _, vm := range m.container(t).VolumeMounts {
		if vm.MountPath == path.Dir(file) {
			require.True(t, vm.ReadOnly, "the catalog is mounted read-only")
			for _, v := range m.deployment.Spec.Template.Spec.Volumes {
				if v.Name == vm.Name && v.ConfigMap != nil {
					mountedFrom = v.ConfigMap.Name
				}
			}
		}
	}
	require.Equal(t, catalogConfigMap, mountedFrom, "CATALOG_FILE's directory must be the mount of ConfigMap %s", catalogConfigMap)
	data, ok := m.configMaps[catalogConfigMap].Data[path.Base(file)]
	require.True(t, ok, "ConfigMap %s has no key %s (CATALOG_FILE's name)", catalogConfigMap, path.Base(file))
	c, err := catalog.Parse(strings.NewReader(data))
	require.NoError(t, err, "the catalog in ConfigMap %s", catalogConfigMap)
	require.Positive(t, c.Len())
}

func TestServiceAndDisruptionBudgetSelectTheDeploymentsPods(t *testing.T) {
	m := loadManifests(t)
	podLabels := m.deployment.Spec.Template.Labels
	selector, err := metav1.LabelSelectorAsSelector(m.deployment.Spec.Selector)
	require.NoError(t, err)
	require.True(t, selector.Matches(labelsOf(podLabels)), "the Deployment's selector must match its own pods")

	require.NotEmpty(t, m.service.Spec.Selector)
	for k, v := range m.service.Spec.Selector {
		require.Equal(t, v, podLabels[k], "the Service selects %s=%s, which the pods do not carry", k, v)
	}
	require.Len(t, m.service.Spec.Ports, 1)
	require.True(t, targetsPort(m.service.Spec.Ports[0].TargetPort, m.port(t, containerPortName)), "the Service must send traffic to the container port")

	require.NotNil(t, m.pdb.Spec.MinAvailable)
	require.Equal(t, intstr.FromInt32(1), *m.pdb.Spec.MinAvailable)
	pdbSelector, err := metav1.LabelSelectorAsSelector(m.pdb.Spec.Selector)
	require.NoError(t, err)
	require.True(t, pdbSelector.Matches(labelsOf(podLabels)), "the PodDisruptionBudget must select the Deployment's pods")
	require.False(t, pdbSelector.Matches(labelsOf(m.job.Spec.Template.Labels)), "the PodDisruptionBudget must not count the migration's pods")
}

func TestServiceNeverExposesTheInternalPort(t *testing.T) {
	// The internal listener serves the admin API and the shop's sales
	// figures; whatever reaches the Service (an Ingress, a load balancer)
	// must find the public listener only.
	m := loadManifests(t)
	admin := m.port(t, adminPortName)
	require.NotEmpty(t, m.service.Spec.Ports)
	for _, p := range m.service.Spec.Ports {
		target := p.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(p.Port) // an unset targetPort is the port itself
		}
		require.False(t, targetsPort(target, admin), "Service port %s leads to the internal listener (%s)", p.Name, target.String())
		require.True(t, targetsPort(target, m.port(t, containerPortName)), "Service port %s must lead to the public listener", p.Name)
	}
}

type labelsOf map[string]string

func (l labelsOf) Has(k string) bool   { _, ok := l[k]; return ok }
func (l labelsOf) Get(k string) string { return l[k] }
func (l labelsOf) Lookup(k string) (string, bool) {
	v, ok := l[k]
	return v, ok
}

func TestJobMigratesWithTheDeploymentsImage(t *testing.T) {
	m := loadManifests(t)
	job := m.job.Spec.Template.Spec
	require.Len(t, job.Containers, 1)
	require.Equal(t, []string{"migrate"}, job.Containers[0].Args)
	require.Equal(t, m.container(t).Image, job.Containers[0].Image, "migrations must come from the build the Deployment runs")
	require.Contains(t, []corev1.RestartPolicy{corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure}, job.RestartPolicy)
	require.NotNil(t, m.job.Spec.BackoffLimit, "a failing migration gives up after a few attempts")
	require.NotNil(t, m.job.Spec.ActiveDeadlineSeconds, "a migration stuck on a lock gives up")

	var images []string
	for _, img := range m.kustomization.Images {
		images = append(images, img.Name)
	}
	require.Contains(t, images, m.container(t).Image, "kustomization.yaml images: sets the image both run")
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
