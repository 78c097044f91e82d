package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/hodei-jobs/hodei/provider"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
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
	client     kubernetes.Interface
	ns         string
	sa         string
	pullPolicy corev1.PullPolicy
	log        *slog.Logger
	now        func() time.Time
}

var _ provider.Driver = (*Driver)(nil)

// New returns a Driver for the cluster cfg.Kubeconfig names (in-cluster
// when empty).
func New(cfg Config) (*Driver, error) {
	var (
		rc  *rest.Config
		ns  string
		err error
	)
	if cfg.Kubeconfig == "" {
		if rc, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("kubernetes: in-cluster config (set kubeconfig when running outside a cluster): %w", err)
		}
		ns = inClusterNamespace()
	} else {
		cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: cfg.Kubeconfig}, &clientcmd.ConfigOverrides{})
		if rc, err = cc.ClientConfig(); err != nil {
			return nil, fmt.Errorf("kubernetes: kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
		if ns, _, err = cc.Namespace(); err != nil {
			return nil, fmt.Errorf("kubernetes: kubeconfig %s: namespace: %w", cfg.Kubeconfig, err)
		}
	}
	if cfg.Namespace == "" {
		cfg.Namespace = ns
	}
	return NewFromREST(rc, cfg)
}

// NewFromREST returns a Driver using rc; cfg.Kubeconfig is ignored. Tests
// use it with the config of a test API server.
func NewFromREST(rc *rest.Config, cfg Config) (*Driver, error) {
	rc = rest.CopyConfig(rc)
	if rc.UserAgent == "" {
		rc.UserAgent = "hodei"
	}
	// client-go's default limiter (5 QPS, burst 10) would queue a burst of
	// Starts (three calls each) behind each other.
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 50, 100
	}
	// A safety net for callers without a deadline: a hung connection
	// must not hang the Manager.
	if rc.Timeout == 0 {
		rc.Timeout = time.Minute
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	if errs := validation.IsDNS1123Label(cfg.Namespace); len(errs) > 0 {
		return nil, fmt.Errorf("kubernetes: namespace %q: %s", cfg.Namespace, errs[0])
	}
	var pp corev1.PullPolicy
	switch cfg.ImagePullPolicy {
	case "":
		pp = corev1.PullIfNotPresent
	case string(corev1.PullAlways), string(corev1.PullIfNotPresent), string(corev1.PullNever):
		pp = corev1.PullPolicy(cfg.ImagePullPolicy)
	default:
		return nil, fmt.Errorf("kubernetes: image pull policy %q: want Always, IfNotPresent or Never", cfg.ImagePullPolicy)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: client: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Driver{client: client, ns: cfg.Namespace, sa: cfg.ServiceAccount, pullPolicy: pp,
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
	secret := len(req.SecretEnv) > 0
	if secret {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls},
			Type:       corev1.SecretTypeOpaque,
			Data:       make(map[string][]byte, len(req.SecretEnv)),
		}
		for k, v := range req.SecretEnv {
			s.Data[k] = []byte(v)
		}
		if _, err := d.client.CoreV1().Secrets(d.ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return "", apiError("create secret "+name, err)
		}
	}
	pod, err := d.client.CoreV1().Pods(d.ns).Create(ctx, d.pod(name, lbls, req), metav1.CreateOptions{})
	if err != nil {
		err = apiError("create pod "+name, err)
		if secret {
			err = errors.Join(err, d.deleteSecret(context.WithoutCancel(ctx), name))
		}
		return "", err
	}
	if secret {
		if err := d.ownSecret(ctx, pod); err != nil {
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
	if errs := validation.IsDNS1123Label(NamePrefix + req.InstanceID); len(errs) > 0 {
		return fmt.Errorf("kubernetes: start: instance id %q does not make a Pod name: %s", req.InstanceID, errs[0])
	}
	if req.CPUMillis > math.MaxInt32 || req.MemoryBytes > math.MaxInt64 {
		return fmt.Errorf("kubernetes: start %s: resources %d millicpu, %d bytes out of range", req.InstanceID, req.CPUMillis, req.MemoryBytes)
	}
	for k := range req.SecretEnv {
		if errs := validation.IsConfigMapKey(k); len(errs) > 0 {
			return fmt.Errorf("kubernetes: start %s: secret env name %q: %s", req.InstanceID, k, errs[0])
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

func (d *Driver) pod(name string, lbls map[string]string, req provider.StartRequest) *corev1.Pod {
	var env []corev1.EnvVar
	for _, k := range slices.Sorted(maps.Keys(req.Env)) {
		if _, ok := req.SecretEnv[k]; ok || k == EnvPodName {
			continue
		}
		env = append(env, corev1.EnvVar{Name: k, Value: req.Env[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(req.SecretEnv)) {
		env = append(env, corev1.EnvVar{Name: k, ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: k},
		}})
	}
	env = append(env, corev1.EnvVar{Name: EnvPodName, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"},
	}})
	res := corev1.ResourceList{}
	if req.CPUMillis > 0 {
		res[corev1.ResourceCPU] = *resource.NewMilliQuantity(int64(req.CPUMillis), resource.DecimalSI)
	}
	if req.MemoryBytes > 0 {
		res[corev1.ResourceMemory] = *resource.NewQuantity(int64(req.MemoryBytes), resource.BinarySI)
	}
	var resources corev1.ResourceRequirements
	if len(res) > 0 {
		resources = corev1.ResourceRequirements{Requests: res, Limits: res.DeepCopy()}
	}
	spec := corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever,
		Hostname:      name,
		Containers: []corev1.Container{{
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
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}, Spec: spec}
}

// ownSecret makes pod the Secret's owner, so a cluster's garbage collector
// deletes the Secret with the Pod even if Remove never runs.
func (d *Driver) ownSecret(ctx context.Context, pod *corev1.Pod) error {
	patch := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"Pod","name":%q,"uid":%q}]}}`,
		pod.Name, pod.UID)
	_, err := d.client.CoreV1().Secrets(d.ns).Patch(ctx, pod.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return apiError("set owner of secret "+pod.Name, err)
}

// Remove deletes the Pod at once (grace period 0) and its Secret.
func (d *Driver) Remove(ctx context.Context, handle string) error {
	if handle == "" {
		return errors.New("kubernetes: remove: empty handle")
	}
	err := d.client.CoreV1().Pods(d.ns).Delete(ctx, handle, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))})
	if apierrors.IsNotFound(err) {
		err = nil
	}
	err = errors.Join(apiError("delete pod "+handle, err), d.deleteSecret(ctx, handle))
	if err == nil {
		d.log.DebugContext(ctx, "pod removed", "pod", handle)
	}
	return err
}

func (d *Driver) deleteSecret(ctx context.Context, name string) error {
	err := d.client.CoreV1().Secrets(d.ns).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return apiError("delete secret "+name, err)
}

// RemoveAll deletes every Pod (grace period 0) and Secret labelled as
// managed and owned by owner: a sweep after a crash, and test cleanup.
func (d *Driver) RemoveAll(ctx context.Context, owner string) error {
	sel := ownerSelector(owner)
	perr := d.client.CoreV1().Pods(d.ns).DeleteCollection(ctx,
		metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}, metav1.ListOptions{LabelSelector: sel})
	serr := d.client.CoreV1().Secrets(d.ns).DeleteCollection(ctx,
		metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: sel})
	return errors.Join(apiError("delete pods of "+owner, perr), apiError("delete secrets of "+owner, serr))
}

func ownerSelector(owner string) string {
	return labels.SelectorFromSet(labels.Set{provider.LabelManaged: "true", provider.LabelOwner: owner}).String()
}

// List returns the owner's Pods as instances. Pods pending for longer
// than a few seconds without a reason in their status cost one more call
// each (their Events); a failure of that lookup only leaves Reason empty.
func (d *Driver) List(ctx context.Context, owner string) ([]provider.Instance, error) {
	pods, err := d.client.CoreV1().Pods(d.ns).List(ctx, metav1.ListOptions{LabelSelector: ownerSelector(owner)})
	if err != nil {
		return nil, apiError("list pods of "+owner, err)
	}
	now := d.now()
	out := make([]provider.Instance, 0, len(pods.Items))
	for i := range pods.Items {
		p := &pods.Items[i]
		in := provider.Instance{
			InstanceID: p.Labels[provider.LabelInstance],
			Handle:     p.Name,
			Created:    p.CreationTimestamp.Time,
		}
		in.Phase, in.Reason = podState(p)
		if in.Phase == provider.PhasePending && in.Reason == "" && now.Sub(p.CreationTimestamp.Time) >= eventsAfter {
			in.Reason = d.warning(ctx, p)
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b provider.Instance) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// warning returns "Reason: message" of the newest Warning Event about p,
// or "" when there is none or the lookup fails.
func (d *Driver) warning(ctx context.Context, p *corev1.Pod) string {
	evs, err := d.client.CoreV1().Events(d.ns).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=Pod,involvedObject.name=" + p.Name +
			",involvedObject.uid=" + string(p.UID) + ",type=" + corev1.EventTypeWarning,
	})
	if err != nil {
		d.log.DebugContext(ctx, "list events", "pod", p.Name, "err", err)
		return ""
	}
	return newestWarning(evs.Items)
}
