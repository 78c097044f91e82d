package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"slices"
	"time"

	"github.com/hodei-jobs/hodei/provider"
)

// Kind is the driver's name.
const Kind = "kubernetes"

// NamePrefix starts the name of every Pod and Secret the driver creates:
// NamePrefix + instance id.
const NamePrefix = "hodei-agent-"

// ContainerName is the agent container's name in the Pod.
const ContainerName = "agent"

// EnvPodName is set to the Pod's name through the downward API.
const EnvPodName = "HODEI_POD_NAME"

// eventsAfter is how long a Pod must have been pending before List looks
// at its Events for a reason: a fresh Pod is pending for normal reasons,
// and the lookup costs one API call per Pod.
const eventsAfter = 5 * time.Second

// Config configures a Driver.
type Config struct {
	// Kubeconfig is the path of a kubeconfig file (its current context is
	// used); empty means in-cluster configuration (the Pod's service
	// account).
	Kubeconfig string
	// Namespace is where Pods and Secrets are created. Empty means the
	// kubeconfig context's namespace, or the server's own namespace when
	// in-cluster, or "default".
	Namespace string
	// ServiceAccount is the agent Pods' service account. Empty means the
	// namespace's default, with no token mounted.
	ServiceAccount string
	// ImagePullPolicy is "IfNotPresent" (the default), "Always" or "Never".
	ImagePullPolicy string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Driver starts agents as Pods. It is safe for concurrent use.
type Driver struct {
	client     *client
	ns         string
	sa         string
	pullPolicy string
	log        *slog.Logger
	now        func() time.Time
}

var _ provider.Driver = (*Driver)(nil)

// New returns a Driver for the cluster cfg.Kubeconfig names (in-cluster
// when empty).
func New(cfg Config) (*Driver, error) {
	if cfg.Kubeconfig == "" {
		conn, err := inCluster(os.Getenv, serviceAccountDir)
		if err != nil {
			return nil, fmt.Errorf("kubernetes: in-cluster config (set kubeconfig when running outside a cluster): %w", err)
		}
		return newDriver(conn, cfg, "in-cluster config")
	}
	conn, err := loadKubeconfig(cfg.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: kubeconfig %s: %w", cfg.Kubeconfig, err)
	}
	return newDriver(conn, cfg, "kubeconfig "+cfg.Kubeconfig)
}

// NewWithConnection returns a Driver talking to the API server as conn
// says; cfg.Kubeconfig is ignored, and an empty cfg.Namespace means
// conn.Namespace, then "default". Tests use it with the connection of a
// test API server.
//
// Every request carries the User-Agent "hodei" and has a minute to
// complete (a safety net for callers without a deadline: a hung
// connection must not hang the Manager); requests are rate limited to 50
// a second with bursts of 100.
func NewWithConnection(conn Connection, cfg Config) (*Driver, error) {
	return newDriver(conn, cfg, "connection")
}

// newDriver is NewWithConnection; source names where conn came from in
// its errors.
func newDriver(conn Connection, cfg Config, source string) (*Driver, error) {
	if cfg.Namespace == "" {
		cfg.Namespace = conn.Namespace
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	if msg := checkDNSLabel(cfg.Namespace); msg != "" {
		return nil, fmt.Errorf("kubernetes: namespace %q: %s", cfg.Namespace, msg)
	}
	var pp string
	switch cfg.ImagePullPolicy {
	case "":
		pp = "IfNotPresent"
	case "Always", "IfNotPresent", "Never":
		pp = cfg.ImagePullPolicy
	default:
		return nil, fmt.Errorf("kubernetes: image pull policy %q: want Always, IfNotPresent or Never", cfg.ImagePullPolicy)
	}
	c, err := newClient(conn, cfg.Namespace)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %s: %w", source, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Driver{client: c, ns: cfg.Namespace, sa: cfg.ServiceAccount, pullPolicy: pp,
		log: log.With("driver", Kind, "namespace", cfg.Namespace), now: time.Now}, nil
}

// Kind returns "kubernetes".
func (d *Driver) Kind() string { return Kind }

// Namespace returns the namespace the driver creates Pods in.
func (d *Driver) Namespace() string { return d.ns }

// Start creates the instance's Secret (when req.SecretEnv is not empty)
// and Pod, and returns the Pod's name. On error it deletes what it
// created.
func (d *Driver) Start(ctx context.Context, req provider.StartRequest) (string, error) {
	if err := checkRequest(req); err != nil {
		return "", err
	}
	name := NamePrefix + req.InstanceID
	lbls := instanceLabels(req)
	hasSecret := len(req.SecretEnv) > 0
	if hasSecret {
		s := &secret{
			Metadata: objectMeta{Name: name, Labels: lbls},
			Type:     "Opaque",
			Data:     make(map[string][]byte, len(req.SecretEnv)),
		}
		for k, v := range req.SecretEnv {
			s.Data[k] = []byte(v)
		}
		if err := d.client.createSecret(ctx, s); err != nil {
			return "", apiError("create secret "+name, err)
		}
	}
	p, err := d.client.createPod(ctx, d.pod(name, lbls, req))
	if err != nil {
		err = apiError("create pod "+name, err)
		if hasSecret {
			err = errors.Join(err, d.deleteSecret(context.WithoutCancel(ctx), name))
		}
		return "", err
	}
	if hasSecret {
		if err := d.ownSecret(ctx, p); err != nil {
			return "", errors.Join(err, d.Remove(context.WithoutCancel(ctx), name))
		}
	}
	d.log.DebugContext(ctx, "pod created", "pod", name, "instance", req.InstanceID, "image", req.Image)
	return name, nil
}

// checkRequest rejects a request the API server would reject less
// clearly, or that would not fit the names.
func checkRequest(req provider.StartRequest) error {
	if req.Image == "" {
		return fmt.Errorf("kubernetes: start %s: %w: no image", req.InstanceID, provider.ErrImage)
	}
	if req.InstanceID == "" {
		return errors.New("kubernetes: start: empty instance id")
	}
	if msg := checkDNSLabel(NamePrefix + req.InstanceID); msg != "" {
		return fmt.Errorf("kubernetes: start: instance id %q does not make a Pod name: %s", req.InstanceID, msg)
	}
	if req.CPUMillis > math.MaxInt32 || req.MemoryBytes > math.MaxInt64 {
		return fmt.Errorf("kubernetes: start %s: resources %d millicpu, %d bytes out of range", req.InstanceID, req.CPUMillis, req.MemoryBytes)
	}
	for k := range req.SecretEnv {
		if msg := checkSecretKey(k); msg != "" {
			return fmt.Errorf("kubernetes: start %s: secret env name %q: %s", req.InstanceID, k, msg)
		}
	}
	return nil
}

// instanceLabels are the provider's extra labels overlaid with the
// driver's own, which a configuration cannot override.
func instanceLabels(req provider.StartRequest) map[string]string {
	l := maps.Clone(req.Labels)
	if l == nil {
		l = make(map[string]string, 4)
	}
	l[provider.LabelManaged] = "true"
	l[provider.LabelOwner] = req.Owner
	l[provider.LabelInstance] = req.InstanceID
	l[provider.LabelProvider] = req.Provider
	return l
}

func (d *Driver) pod(name string, lbls map[string]string, req provider.StartRequest) *pod {
	var env []envVar
	for _, k := range slices.Sorted(maps.Keys(req.Env)) {
		if _, ok := req.SecretEnv[k]; ok || k == EnvPodName {
			continue
		}
		env = append(env, envVar{Name: k, Value: req.Env[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(req.SecretEnv)) {
		env = append(env, envVar{Name: k, ValueFrom: &envVarSource{SecretKeyRef: &secretKeySelector{Name: name, Key: k}}})
	}
	env = append(env, envVar{Name: EnvPodName, ValueFrom: &envVarSource{FieldRef: &objectFieldSelector{FieldPath: "metadata.name"}}})
	res := map[string]string{}
	if req.CPUMillis > 0 {
		res["cpu"] = milliCPU(int64(req.CPUMillis))
	}
	if req.MemoryBytes > 0 {
		res["memory"] = memoryBytes(int64(req.MemoryBytes))
	}
	var resources *resourceRequirements
	if len(res) > 0 {
		resources = &resourceRequirements{Requests: res, Limits: maps.Clone(res)}
	}
	spec := podSpec{
		RestartPolicy: "Never",
		Hostname:      name,
		Containers: []container{{
			Name:            ContainerName,
			Image:           req.Image,
			ImagePullPolicy: d.pullPolicy,
			Env:             env,
			Resources:       resources,
		}},
	}
	if d.sa != "" {
		spec.ServiceAccountName = d.sa
	} else {
		spec.AutomountServiceAccountToken = new(false)
	}
	return &pod{Metadata: objectMeta{Name: name, Labels: lbls}, Spec: spec}
}

// ownSecret makes p the Secret's owner, so a cluster's garbage collector
// deletes the Secret with the Pod even if Remove never runs.
func (d *Driver) ownSecret(ctx context.Context, p *pod) error {
	patch := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"Pod","name":%q,"uid":%q}]}}`,
		p.Metadata.Name, p.Metadata.UID)
	return apiError("set owner of secret "+p.Metadata.Name, d.client.patchSecret(ctx, p.Metadata.Name, []byte(patch)))
}

// Remove deletes the Pod at once (grace period 0) and its Secret.
func (d *Driver) Remove(ctx context.Context, handle string) error {
	if handle == "" {
		return errors.New("kubernetes: remove: empty handle")
	}
	err := d.client.deletePod(ctx, handle)
	if isNotFound(err) {
		err = nil
	}
	err = errors.Join(apiError("delete pod "+handle, err), d.deleteSecret(ctx, handle))
	if err == nil {
		d.log.DebugContext(ctx, "pod removed", "pod", handle)
	}
	return err
}

func (d *Driver) deleteSecret(ctx context.Context, name string) error {
	err := d.client.deleteSecret(ctx, name)
	if isNotFound(err) {
		return nil
	}
	return apiError("delete secret "+name, err)
}

// RemoveAll deletes every Pod (grace period 0) and Secret labelled as
// managed and owned by owner: a sweep after a crash, and test cleanup.
func (d *Driver) RemoveAll(ctx context.Context, owner string) error {
	sel := ownerSelector(owner)
	perr := d.client.deletePods(ctx, sel)
	serr := d.client.deleteSecrets(ctx, sel)
	return errors.Join(apiError("delete pods of "+owner, perr), apiError("delete secrets of "+owner, serr))
}

func ownerSelector(owner string) string {
	return selector(map[string]string{provider.LabelManaged: "true", provider.LabelOwner: owner}, "", nil)
}

// List returns the owner's Pods as instances. Pods pending for longer
// than a few seconds without a reason in their status cost one more call
// each (their Events); a failure of that lookup only leaves Reason empty.
func (d *Driver) List(ctx context.Context, owner string) ([]provider.Instance, error) {
	pods, err := d.client.listPods(ctx, ownerSelector(owner))
	if err != nil {
		return nil, apiError("list pods of "+owner, err)
	}
	now := d.now()
	out := make([]provider.Instance, 0, len(pods.Items))
	for i := range pods.Items {
		p := &pods.Items[i]
		in := provider.Instance{
			InstanceID: p.Metadata.Labels[provider.LabelInstance],
			Handle:     p.Metadata.Name,
			Created:    p.Metadata.CreationTimestamp,
		}
		in.Phase, in.Reason = podState(p)
		if in.Phase == provider.PhasePending && in.Reason == "" && now.Sub(p.Metadata.CreationTimestamp) >= eventsAfter {
			in.Reason = d.warning(ctx, p)
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b provider.Instance) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// warning returns "Reason: message" of the newest Warning Event about p,
// or "" when there is none or the lookup fails.
func (d *Driver) warning(ctx context.Context, p *pod) string {
	evs, err := d.client.listEvents(ctx, "involvedObject.kind=Pod,involvedObject.name="+p.Metadata.Name+
		",involvedObject.uid="+p.Metadata.UID+",type="+eventWarning)
	if err != nil {
		d.log.DebugContext(ctx, "list events", "pod", p.Metadata.Name, "err", err)
		return ""
	}
	return newestWarning(evs.Items)
}
