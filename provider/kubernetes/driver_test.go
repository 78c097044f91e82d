package kubernetes

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hodei-jobs/hodei/provider"
	"github.com/hodei-jobs/hodei/provider/kubernetes/k8stest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMain(m *testing.M) { os.Exit(k8stest.Main(m)) }

const owner = "server-1"

// setup returns a driver on a fresh namespace of the shared test API
// server; when the test ends it checks that the test removed everything
// it started.
func setup(t *testing.T) (*Driver, *k8stest.Cluster, string) {
	t.Helper()
	c := k8stest.Get(t)
	ns := c.NewNamespace(t)
	d, err := NewWithConnection(ConnectionFromREST(c.RESTConfig()), Config{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		secrets, err := c.Client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items)+len(secrets.Items) > 0 {
			t.Errorf("left behind: %d pods, %d secrets", len(pods.Items), len(secrets.Items))
		}
	})
	return d, c, ns
}

func request(id string) provider.StartRequest {
	return provider.StartRequest{
		InstanceID:  id,
		Provider:    "k8s-pool",
		Owner:       owner,
		Image:       "ghcr.io/hodei-jobs/agent:test",
		Env:         map[string]string{"HODEI_SERVER": "hodei.ci:7070", "HODEI_LABELS": "os=linux,pool=k8s", "HODEI_EPHEMERAL": "true"},
		SecretEnv:   map[string]string{"HODEI_TOKEN": "join-" + id},
		CPUMillis:   1500,
		MemoryBytes: 512 << 20,
		Labels:      map[string]string{"team": "ci", provider.LabelOwner: "spoofed"},
	}
}

func start(t *testing.T, d *Driver, req provider.StartRequest) string {
	t.Helper()
	h, err := d.Start(context.Background(), req)
	if err != nil {
		t.Fatalf("Start(%s) = %v", req.InstanceID, err)
	}
	return h
}

func TestStartCreatesPodAndSecret(t *testing.T) {
	d, c, ns := setup(t)
	ctx := context.Background()
	h := start(t, d, request("i1"))
	if h != "hodei-agent-i1" {
		t.Errorf("Start() handle = %q, want hodei-agent-i1", h)
	}

	pod, err := c.Client.CoreV1().Pods(ns).Get(ctx, h, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{"team": "ci", provider.LabelManaged: "true", provider.LabelOwner: owner,
		provider.LabelInstance: "i1", provider.LabelProvider: "k8s-pool"}
	if diff := cmp.Diff(wantLabels, pod.Labels); diff != "" {
		t.Errorf("pod labels (-want +got):\n%s", diff)
	}
	if pod.Spec.RestartPolicy != corev1.RestartPolicyNever || pod.Spec.Hostname != h ||
		pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		t.Errorf("pod spec: restartPolicy %s, hostname %q, automount %v", pod.Spec.RestartPolicy, pod.Spec.Hostname, pod.Spec.AutomountServiceAccountToken)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("pod has %d containers, want 1", len(pod.Spec.Containers))
	}
	ctr := pod.Spec.Containers[0]
	if ctr.Name != "agent" || ctr.Image != "ghcr.io/hodei-jobs/agent:test" || ctr.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("container = %s %s %s, want agent ghcr.io/hodei-jobs/agent:test IfNotPresent", ctr.Name, ctr.Image, ctr.ImagePullPolicy)
	}
	wantEnv := []corev1.EnvVar{
		{Name: "HODEI_EPHEMERAL", Value: "true"},
		{Name: "HODEI_LABELS", Value: "os=linux,pool=k8s"},
		{Name: "HODEI_SERVER", Value: "hodei.ci:7070"},
		{Name: "HODEI_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: h}, Key: "HODEI_TOKEN"}}},
		{Name: "HODEI_POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{
			APIVersion: "v1", FieldPath: "metadata.name"}}},
	}
	if diff := cmp.Diff(wantEnv, ctr.Env); diff != "" {
		t.Errorf("container env (-want +got):\n%s", diff)
	}
	wantRes := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m"), corev1.ResourceMemory: resource.MustParse("512Mi")}
	for name, rl := range map[string]corev1.ResourceList{"requests": ctr.Resources.Requests, "limits": ctr.Resources.Limits} {
		for k, want := range wantRes {
			if got := rl[k]; got.Cmp(want) != 0 {
				t.Errorf("%s[%s] = %s, want %s", name, k, got.String(), want.String())
			}
		}
		if len(rl) != len(wantRes) {
			t.Errorf("%s = %v, want only cpu and memory", name, rl)
		}
	}

	secret, err := c.Client.CoreV1().Secrets(ns).Get(ctx, h, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(secret.Data["HODEI_TOKEN"]); got != "join-i1" || len(secret.Data) != 1 {
		t.Errorf("secret data = %v, want only HODEI_TOKEN=join-i1", secret.Data)
	}
	if diff := cmp.Diff(wantLabels, secret.Labels); diff != "" {
		t.Errorf("secret labels (-want +got):\n%s", diff)
	}
	if refs := secret.OwnerReferences; len(refs) != 1 || refs[0].Kind != "Pod" || refs[0].Name != h || refs[0].UID != pod.UID {
		t.Errorf("secret ownerReferences = %+v, want the pod (uid %s)", refs, pod.UID)
	}

	// What a test kubelet would run the agent with.
	env, err := c.PodEnv(ctx, ns, h)
	if err != nil {
		t.Fatal(err)
	}
	if env["HODEI_TOKEN"] != "join-i1" || env["HODEI_POD_NAME"] != h || env["HODEI_SERVER"] != "hodei.ci:7070" {
		t.Errorf("PodEnv() = %v", env)
	}

	list, err := d.List(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].InstanceID != "i1" || list[0].Handle != h || list[0].Phase != provider.PhasePending ||
		list[0].Reason != "" || list[0].Created.IsZero() {
		t.Errorf("List() = %+v, want i1 pending", list)
	}

	if err := d.Remove(ctx, h); err != nil {
		t.Fatalf("Remove() = %v", err)
	}
	if _, err := c.Client.CoreV1().Pods(ns).Get(ctx, h, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod after Remove: %v, want NotFound", err)
	}
	if _, err := c.Client.CoreV1().Secrets(ns).Get(ctx, h, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("secret after Remove: %v, want NotFound", err)
	}
	if err := d.Remove(ctx, h); err != nil {
		t.Errorf("Remove(removed) = %v, want nil", err)
	}
}

func TestStartWithoutSecretOrLimits(t *testing.T) {
	c := k8stest.Get(t)
	ns := c.NewNamespace(t)
	if _, err := c.Client.CoreV1().ServiceAccounts(ns).Create(context.Background(),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "agents"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err := NewWithConnection(ConnectionFromREST(c.RESTConfig()), Config{Namespace: ns, ServiceAccount: "agents", ImagePullPolicy: "Always"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req := request("plain")
	req.SecretEnv, req.CPUMillis, req.MemoryBytes = nil, 0, 0
	h := start(t, d, req)
	defer func() {
		if err := d.Remove(ctx, h); err != nil {
			t.Error(err)
		}
	}()
	pod, err := c.Client.CoreV1().Pods(ns).Get(ctx, h, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctr := pod.Spec.Containers[0]
	if len(ctr.Resources.Requests)+len(ctr.Resources.Limits) != 0 {
		t.Errorf("resources = %+v, want none", ctr.Resources)
	}
	if pod.Spec.ServiceAccountName != "agents" || ctr.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("serviceAccountName %q, pull policy %s; want agents, Always", pod.Spec.ServiceAccountName, ctr.ImagePullPolicy)
	}
	if _, err := c.Client.CoreV1().Secrets(ns).Get(ctx, h, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("secret without SecretEnv: %v, want NotFound", err)
	}
}

// A Pod the API server rejects (here: its service account is missing)
// leaves no Secret behind.
func TestStartFailureCleansUp(t *testing.T) {
	c := k8stest.Get(t)
	ns := c.NewNamespace(t)
	d, err := NewWithConnection(ConnectionFromREST(c.RESTConfig()), Config{Namespace: ns, ServiceAccount: "missing"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = d.Start(ctx, request("bad"))
	if err == nil || errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("Start() = %v, want a rejection", err)
	}
	t.Logf("Start() = %v", err)
	if _, err := c.Client.CoreV1().Secrets(ns).Get(ctx, "hodei-agent-bad", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("secret after failed Start: %v, want NotFound", err)
	}
}

func TestStartRejectsBadRequests(t *testing.T) {
	d, err := NewWithConnection(Connection{Server: "https://127.0.0.1:1"}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	req := request("x")
	req.Image = ""
	if _, err := d.Start(context.Background(), req); !errors.Is(err, provider.ErrImage) {
		t.Errorf("Start(no image) = %v, want ErrImage", err)
	}
	for _, id := range []string{"", "Upper", "under_score", strings.Repeat("a", 60)} {
		req := request(id)
		if _, err := d.Start(context.Background(), req); err == nil {
			t.Errorf("Start(id %q) = nil, want an error", id)
		}
	}
	if _, err := NewWithConnection(Connection{Server: "https://127.0.0.1:1"}, Config{ImagePullPolicy: "Sometimes"}); err == nil {
		t.Error("NewWithConnection(pull policy Sometimes) = nil error")
	}
}

// An API server that cannot be reached makes every call wrap
// provider.ErrUnavailable.
func TestUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // connections are refused from now on
	d, err := NewWithConnection(Connection{Server: "https://" + addr, Insecure: true}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := d.Start(ctx, request("u1")); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("Start() = %v, want ErrUnavailable", err)
	}
	if _, err := d.List(ctx, owner); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("List() = %v, want ErrUnavailable", err)
	}
	if err := d.Remove(ctx, "hodei-agent-u1"); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("Remove() = %v, want ErrUnavailable", err)
	}
}

func TestListPhases(t *testing.T) {
	d, c, ns := setup(t)
	ctx := context.Background()
	for _, id := range []string{"pending", "running", "done", "oom"} {
		start(t, d, request(id))
	}
	other := request("other")
	other.Owner = "server-2"
	start(t, d, other)
	defer func() {
		if err := d.RemoveAll(ctx, owner); err != nil {
			t.Error(err)
		}
		if err := d.RemoveAll(ctx, "server-2"); err != nil {
			t.Error(err)
		}
	}()
	for _, id := range []string{"running", "done", "oom"} {
		must(t, c.BindPod(ctx, ns, "hodei-agent-"+id, "node-1"))
		must(t, c.SetRunning(ctx, ns, "hodei-agent-"+id))
	}
	must(t, c.SetPhase(ctx, ns, "hodei-agent-done", corev1.PodSucceeded, "Completed"))
	must(t, c.SetExited(ctx, ns, "hodei-agent-oom", 137, "OOMKilled"))

	got := listByID(t, d, owner)
	want := map[string]provider.Instance{
		"pending": {InstanceID: "pending", Handle: "hodei-agent-pending", Phase: provider.PhasePending},
		"running": {InstanceID: "running", Handle: "hodei-agent-running", Phase: provider.PhaseRunning},
		"done":    {InstanceID: "done", Handle: "hodei-agent-done", Phase: provider.PhaseExited, Reason: "exited with code 0 (Completed)"},
		"oom":     {InstanceID: "oom", Handle: "hodei-agent-oom", Phase: provider.PhaseExited, Reason: "exited with code 137 (OOMKilled)"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List() (-want +got):\n%s", diff)
	}
}

func TestListPendingReasons(t *testing.T) {
	d, c, ns := setup(t)
	ctx := context.Background()
	for _, id := range []string{"unschedulable", "pull", "event", "fresh"} {
		start(t, d, request(id))
	}
	defer func() {
		if err := d.RemoveAll(ctx, owner); err != nil {
			t.Error(err)
		}
	}()
	must(t, c.MarkUnschedulable(ctx, ns, "hodei-agent-unschedulable", "0/3 nodes are available: 3 Insufficient cpu."))
	must(t, c.BindPod(ctx, ns, "hodei-agent-pull", "node-1"))
	must(t, c.SetWaiting(ctx, ns, "hodei-agent-pull", "ImagePullBackOff", `Back-off pulling image "ghcr.io/hodei-jobs/agent:test"`))
	must(t, c.BindPod(ctx, ns, "hodei-agent-event", "node-1"))
	must(t, c.Warn(ctx, ns, "hodei-agent-event", "FailedMount", `MountVolume.SetUp failed for volume "work": no space left`))

	// Events are read only for Pods pending for a while: not yet.
	got := listByID(t, d, owner)
	want := map[string]provider.Instance{
		"unschedulable": {InstanceID: "unschedulable", Handle: "hodei-agent-unschedulable", Phase: provider.PhasePending,
			Reason: "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."},
		"pull": {InstanceID: "pull", Handle: "hodei-agent-pull", Phase: provider.PhasePending,
			Reason: `ImagePullBackOff: Back-off pulling image "ghcr.io/hodei-jobs/agent:test"`},
		"event": {InstanceID: "event", Handle: "hodei-agent-event", Phase: provider.PhasePending},
		"fresh": {InstanceID: "fresh", Handle: "hodei-agent-fresh", Phase: provider.PhasePending},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List() at once (-want +got):\n%s", diff)
	}

	d.now = func() time.Time { return time.Now().Add(time.Minute) }
	got = listByID(t, d, owner)
	e := want["event"]
	e.Reason = `FailedMount: MountVolume.SetUp failed for volume "work": no space left`
	want["event"] = e
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List() a minute later (-want +got):\n%s", diff)
	}
}

func TestRemoveAll(t *testing.T) {
	d, c, ns := setup(t)
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		start(t, d, request(id))
	}
	other := request("theirs")
	other.Owner = "server-2"
	start(t, d, other)
	// A bound, running Pod would wait for its kubelet on a graceful
	// delete: RemoveAll must not leave it Terminating.
	must(t, c.BindPod(ctx, ns, "hodei-agent-a", "node-1"))
	must(t, c.SetRunning(ctx, ns, "hodei-agent-a"))

	if err := d.RemoveAll(ctx, owner); err != nil {
		t.Fatalf("RemoveAll() = %v", err)
	}
	if got := listByID(t, d, owner); len(got) != 0 {
		t.Errorf("List() after RemoveAll = %v, want none", got)
	}
	if got := listByID(t, d, "server-2"); len(got) != 1 {
		t.Errorf("List(server-2) after RemoveAll(%s) = %v, want theirs", owner, got)
	}
	secrets, err := c.Client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets.Items) != 1 || secrets.Items[0].Name != "hodei-agent-theirs" {
		t.Errorf("secrets after RemoveAll = %d, want only hodei-agent-theirs", len(secrets.Items))
	}
	if err := d.RemoveAll(ctx, "server-2"); err != nil {
		t.Fatal(err)
	}
}

// Remove deletes a bound, running Pod at once (no grace period).
func TestRemoveRunning(t *testing.T) {
	d, c, ns := setup(t)
	ctx := context.Background()
	h := start(t, d, request("r"))
	must(t, c.BindPod(ctx, ns, h, "node-1"))
	must(t, c.SetRunning(ctx, ns, h))
	if err := d.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.PodGone(ctx, ns, h); err != nil {
		t.Fatalf("pod still there after Remove: %v", err)
	}
}

func TestNewFromKubeconfig(t *testing.T) {
	c := k8stest.Get(t)
	d, err := New(Config{Kubeconfig: c.Kubeconfig()})
	if err != nil {
		t.Fatal(err)
	}
	if d.Namespace() != "default" || d.Kind() != "kubernetes" {
		t.Errorf("New() namespace %q kind %q, want default kubernetes", d.Namespace(), d.Kind())
	}
	ns := c.NewNamespace(t)
	if d, err = New(Config{Kubeconfig: c.Kubeconfig(), Namespace: ns}); err != nil {
		t.Fatal(err)
	}
	if list, err := d.List(context.Background(), owner); err != nil || len(list) != 0 {
		t.Errorf("List() = %v, %v, want none", list, err)
	}
	if _, err := New(Config{Kubeconfig: "/nonexistent/kubeconfig"}); err == nil {
		t.Error("New(missing kubeconfig) = nil error")
	}
}

func listByID(t *testing.T, d *Driver, owner string) map[string]provider.Instance {
	t.Helper()
	list, err := d.List(context.Background(), owner)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]provider.Instance{}
	for _, in := range list {
		if in.Created.IsZero() {
			t.Errorf("instance %s: Created is zero", in.InstanceID)
		}
		in.Created = time.Time{}
		m[in.InstanceID] = in
	}
	return m
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The test kubelet runs each Pod as a local process with the Pod's
// environment (the Secret's token included), reports its exit code, and
// kills it when the driver removes the Pod; refused Pods surface the
// scheduler's reason.
func TestKubeletRunsPods(t *testing.T) {
	d, c, ns := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan string, 10)
	k := &k8stest.Kubelet{Cluster: c, Namespace: ns,
		Admit: func(p *corev1.Pod) (bool, string) {
			return p.Labels[provider.LabelInstance] != "huge", "0/1 nodes are available: 1 Insufficient memory."
		},
		Command: func(_ context.Context, p *corev1.Pod, env map[string]string) *exec.Cmd {
			script := map[string]string{
				"ok":   `test "$HODEI_TOKEN" = join-ok && test "$HODEI_POD_NAME" = hodei-agent-ok && test "$HODEI_SERVER" = hodei.ci:7070`,
				"fail": `exit 3`,
				"slow": `exec sleep 60`,
			}[p.Labels[provider.LabelInstance]]
			cmd := exec.Command("sh", "-c", script)
			cmd.Env = k8stest.Environ(env)
			return cmd
		},
		Exited: func(p *corev1.Pod, _ *os.ProcessState) { exited <- p.Name },
	}
	runErr := make(chan error, 1)
	go func() { runErr <- k.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Kubelet.Run() = %v", err)
		}
		if err := d.RemoveAll(context.Background(), owner); err != nil {
			t.Error(err)
		}
	}()

	for _, id := range []string{"ok", "fail", "slow", "huge"} {
		start(t, d, request(id))
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	for name, phase := range map[string]corev1.PodPhase{"hodei-agent-ok": corev1.PodSucceeded,
		"hodei-agent-fail": corev1.PodFailed, "hodei-agent-slow": corev1.PodRunning} {
		if _, err := c.WaitPod(wctx, ns, "", func(p *corev1.Pod) bool { return p.Name == name && p.Status.Phase == phase }); err != nil {
			t.Fatalf("waiting for %s to be %s: %v", name, phase, err)
		}
	}
	got := listByID(t, d, owner)
	want := map[string]provider.Instance{
		"ok":   {InstanceID: "ok", Handle: "hodei-agent-ok", Phase: provider.PhaseExited, Reason: "exited with code 0 (Completed)"},
		"fail": {InstanceID: "fail", Handle: "hodei-agent-fail", Phase: provider.PhaseExited, Reason: "exited with code 3 (Error)"},
		"slow": {InstanceID: "slow", Handle: "hodei-agent-slow", Phase: provider.PhaseRunning},
		"huge": {InstanceID: "huge", Handle: "hodei-agent-huge", Phase: provider.PhasePending,
			Reason: "Unschedulable: 0/1 nodes are available: 1 Insufficient memory."},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List() (-want +got):\n%s", diff)
	}

	if err := d.Remove(ctx, "hodei-agent-slow"); err != nil {
		t.Fatal(err)
	}
	for name := ""; name != "hodei-agent-slow"; { // skip ok and fail
		select {
		case name = <-exited:
		case <-wctx.Done():
			t.Fatal("the removed Pod's process still runs")
		}
	}
}
