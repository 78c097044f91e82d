package kubernetes_test

// End-to-end tests: the provider Manager, driving the kubernetes Driver
// against a real kube-apiserver (k8stest), starts Pods for queued jobs of
// an in-process Hodei server (server.New, plaintext HWP with a static join
// token). k8stest.Kubelet stands in for the scheduler and the kubelet: it
// runs the real hodei-agent binary as a local process with the Pod's
// resolved environment (the join token read from the Pod's Secret), so
// the agent connects only if the Pod was built right.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/internal/syncbuf"
	"github.com/hodei-jobs/hodei/logstore"
	"github.com/hodei-jobs/hodei/projections"
	"github.com/hodei-jobs/hodei/provider"
	"github.com/hodei-jobs/hodei/provider/kubernetes"
	"github.com/hodei-jobs/hodei/provider/kubernetes/k8stest"
	"github.com/hodei-jobs/hodei/server"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kclient "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const (
	e2eProvider = "k8s-e2e"
	e2eImage    = "ghcr.io/hodei-jobs/agent:e2e"
	// e2eWorkDir is the agent's work dir as the Pod spec says it; the
	// test kubelet gives each agent process its own temp dir instead.
	e2eWorkDir  = "/var/lib/hodei-agent"
	managedOnly = provider.LabelManaged + "=true"
)

// TestE2E runs the end-to-end cases in order on the package's shared
// control plane, each in its own namespace with its own Hodei server, and
// finally checks that no Pod or Secret labelled hodei.managed is left in
// any namespace.
func TestE2E(t *testing.T) {
	c := k8stest.Get(t)
	agent := buildAgent(t)
	t.Cleanup(func() { checkNothingManaged(t, c) })

	t.Run("JobRunsInAPod", func(t *testing.T) { testJobRunsInAPod(t, c, agent) })
	t.Run("NeverMoreThanMaxPods", func(t *testing.T) { testNeverMoreThanMaxPods(t, c, agent) })
	t.Run("CancelPendingJobDeletesPod", func(t *testing.T) { testCancelPendingJob(t, c, agent) })
	t.Run("UnschedulableReasonParksJob", func(t *testing.T) { testUnschedulable(t, c, agent) })
	t.Run("SweepAtStart", func(t *testing.T) { testSweepAtStart(t, c) })
}

// buildAgent builds cmd/hodei-agent into a temp dir of t.
func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hodei-agent")
	start := time.Now()
	out, err := exec.Command("go", "build", "-o", bin, "github.com/hodei-jobs/hodei/cmd/hodei-agent").CombinedOutput()
	if err != nil {
		t.Fatalf("go build hodei-agent: %v\n%s", err, out)
	}
	t.Logf("built hodei-agent in %v", time.Since(start).Round(time.Millisecond))
	return bin
}

// checkNothingManaged fails t if a Pod or Secret labelled hodei.managed
// exists in any namespace (those of deleted namespaces included: without
// a namespace controller their objects stay in etcd).
func checkNothingManaged(t *testing.T, c *k8stest.Cluster) {
	ctx := context.Background()
	pods, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: managedOnly})
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := c.Client.CoreV1().Secrets("").List(ctx, metav1.ListOptions{LabelSelector: managedOnly})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		t.Errorf("left behind: pod %s/%s", p.Namespace, p.Name)
	}
	for _, s := range secrets.Items {
		t.Errorf("left behind: secret %s/%s", s.Namespace, s.Name)
	}
}

// env is one end-to-end case: a namespace, a driver on it, a Hodei server
// and, when started, a test kubelet and a Manager. Everything stops when
// the test ends, in the order manager, kubelet, server; then the
// namespace must hold no managed Pod or Secret.
type env struct {
	t     *testing.T
	c     *k8stest.Cluster
	ns    string
	owner string
	pool  string // the provider's agent label pool=<pool>, and the jobs' selector
	token string // the server's join token, handed out as the instance credential
	d     *kubernetes.Driver
	// identity is the driver's client configuration (see serverIdentity).
	identity *rest.Config
	srv      *server.Server
	store    *memory.Store
	logs     *logstore.Store
	work     string // parent of the agents' work dirs
	out      *syncbuf.Buffer
	ctx      context.Context
	logger   *slog.Logger
	mgr      *provider.Manager
}

func newEnv(t *testing.T, c *k8stest.Cluster) *env {
	t.Helper()
	ns := c.NewNamespace(t)
	suffix := strings.TrimPrefix(ns, "hodei-test-")
	e := &env{t: t, c: c, ns: ns, owner: "owner-" + suffix, pool: "pool-" + suffix, token: "join-" + randHex(8),
		work: t.TempDir(), out: &syncbuf.Buffer{}, ctx: context.Background()}
	e.logger = slog.New(slog.NewTextHandler(e.out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// Registered before anything is started, so it runs after all of it
	// stopped and before the namespace is deleted.
	t.Cleanup(e.checkClean)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager, server and agent output:\n%s", e.out.String())
		}
	})

	var err error
	e.identity = e.serverIdentity()
	if e.d, err = kubernetes.NewWithConnection(kubernetes.ConnectionFromREST(e.identity), kubernetes.Config{Namespace: ns, Logger: e.logger}); err != nil {
		t.Fatal(err)
	}
	e.store = memory.New(memory.Options{})
	if e.logs, err = logstore.Open(t.TempDir(), logstore.Options{Logger: e.logger}); err != nil {
		t.Fatal(err)
	}
	srvLog := slog.New(slog.NewTextHandler(e.out, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e.srv, err = server.New(e.ctx, e.store, e.logs, server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		JoinToken: e.token, Logger: srvLog, ShutdownGrace: 2 * time.Second, Version: "e2e",
		Core: core.Config{HeartbeatInterval: 500 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(e.ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- e.srv.Run(sctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-runErr; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("server.Run() = %v", err)
		}
		if err := e.logs.Close(); err != nil {
			t.Error(err)
		}
		if err := e.store.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

// serverIdentity returns the client configuration the driver runs with: a
// service account of the namespace (impersonated by the admin), bound to
// a Role with exactly the permissions the package documentation lists,
// so every driver call is authorized by RBAC as in a real deployment.
func (e *env) serverIdentity() *rest.Config {
	e.t.Helper()
	const sa = "hodei-server"
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: sa}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create", "delete", "deletecollection", "list"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create", "patch", "delete", "deletecollection"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"list"}},
	}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: sa},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: e.ns}}}
	if _, err := e.c.Client.RbacV1().Roles(e.ns).Create(e.ctx, role, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.c.Client.RbacV1().RoleBindings(e.ns).Create(e.ctx, binding, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	rc := e.c.RESTConfig()
	rc.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + e.ns + ":" + sa}
	return rc
}

// checkClean fails the test if the namespace still holds a managed Pod
// or Secret, and removes them so later checks see only their own.
func (e *env) checkClean() {
	t, ctx := e.t, context.Background()
	pods, err := e.c.Client.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: managedOnly})
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := e.c.Client.CoreV1().Secrets(e.ns).List(ctx, metav1.ListOptions{LabelSelector: managedOnly})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(pods.Items) + len(secrets.Items); n > 0 {
		t.Errorf("left behind in %s: %d pods, %d secrets", e.ns, len(pods.Items), len(secrets.Items))
		for _, p := range pods.Items {
			if err := e.d.RemoveAll(ctx, p.Labels[provider.LabelOwner]); err != nil {
				t.Error(err)
			}
		}
		for _, s := range secrets.Items {
			if err := e.d.RemoveAll(ctx, s.Labels[provider.LabelOwner]); err != nil {
				t.Error(err)
			}
		}
	}
}

// kubelet starts the test kubelet on the namespace; admit may be nil.
// Each agent process gets the Pod's environment, its own work dir and the
// Pod's name as agent name (a Pod's hostname is its name).
func (e *env) kubelet(agent string, admit func(*corev1.Pod) (bool, string)) {
	ctx, cancel := context.WithCancel(e.ctx)
	k := &k8stest.Kubelet{Cluster: e.c, Namespace: e.ns, Admit: admit,
		Command: func(_ context.Context, p *corev1.Pod, env map[string]string) *exec.Cmd {
			env["HODEI_WORK_DIR"] = filepath.Join(e.work, p.Name)
			env["HODEI_AGENT_NAME"] = p.Name
			cmd := exec.Command(agent)
			cmd.Env = k8stest.Environ(env)
			cmd.Stdout, cmd.Stderr = e.out, e.out
			return cmd
		}}
	runErr := make(chan error, 1)
	go func() { runErr <- k.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			e.t.Errorf("Kubelet.Run() = %v", err)
		}
	})
}

// config is the provider every case starts from.
func (e *env) config() provider.Config {
	return provider.Config{Name: e2eProvider, Image: e2eImage, Labels: map[string]string{"pool": e.pool},
		PlatformLabels: map[string]string{"team": "e2e"}, CPUMillis: 500, MemoryBytes: 256 << 20,
		Max: 1, IdleTimeout: time.Second, StartTimeout: 30 * time.Second,
		ServerAddress: e.srv.GRPCAddr(), Plaintext: true, Env: map[string]string{"HODEI_WORK_DIR": e2eWorkDir}}
}

// manager starts a Manager for cfg; it stops first when the test ends.
func (e *env) manager(cfg provider.Config) *provider.Manager {
	m, err := provider.NewManager(cfg, provider.Options{Owner: e.owner, Cluster: e.srv.Core(), Driver: e.d,
		Credential: func(context.Context, string) (string, error) { return e.token, nil },
		ListEvery:  250 * time.Millisecond, Logger: e.logger})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			e.t.Errorf("Manager.Run() = %v", err)
		}
	})
	e.mgr = m
	return m
}

// submit queues one job per script for the provider's pool.
func (e *env) submit(scripts ...string) []string {
	e.t.Helper()
	reqs := make([]core.SubmitRequest, len(scripts))
	for i, s := range scripts {
		reqs[i].Spec = domain.JobSpec{Name: fmt.Sprintf("e2e-%d", i), Script: s, Selector: map[string]string{"pool": e.pool}}
	}
	var ids []string
	for _, res := range e.srv.Core().Submit(e.ctx, "alice", reqs) {
		if res.Err != nil {
			e.t.Fatal(res.Err)
		}
		ids = append(ids, res.JobID)
	}
	return ids
}

func (e *env) waitFor(what string, timeout time.Duration, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) job(id string) projections.JobView {
	v, _ := e.srv.Core().Jobs().Get(id)
	return v
}

func (e *env) succeeded(ids ...string) func() bool {
	return func() bool {
		for _, id := range ids {
			if e.job(id).Status != domain.JobStatusSucceeded {
				return false
			}
		}
		return true
	}
}

// jobLog returns attempt 1's stored log.
func (e *env) jobLog(id string) string {
	var b bytes.Buffer
	buf := make([]byte, 4096)
	for off := uint64(0); ; {
		n, err := e.logs.Read(id, 1, off, buf)
		b.Write(buf[:n])
		off += uint64(n)
		if err != nil || n == 0 {
			return b.String()
		}
	}
}

// waitLog waits until job id's log holds want (the log may be flushed
// just after the job's end is recorded).
func (e *env) waitLog(id, want string) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(e.jobLog(id), want) {
		if time.Now().After(deadline) {
			e.t.Errorf("log of %s = %q, want it to hold %q", id, e.jobLog(id), want)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// instEvent is one instance event from the log.
type instEvent struct {
	ID, Type, Reason string
	Jobs             []string
}

// instanceEvents returns the instance events in log order.
func (e *env) instanceEvents() []instEvent {
	e.t.Helper()
	envs, err := e.store.ReadAll(e.ctx, 1, 1<<20)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []instEvent
	for i := range envs {
		agg, id, ok := domain.ParseStream(envs[i].StreamID)
		if !ok || agg != "instance" {
			continue
		}
		ie := instEvent{ID: id, Type: envs[i].Type}
		ev, err := e.srv.Core().Codec().Decode(&envs[i])
		if err != nil {
			e.t.Fatalf("decode %s: %v", envs[i].Type, err)
		}
		switch x := ev.(type) {
		case domain.InstanceRequested:
			ie.Jobs = x.Jobs
		case domain.InstanceFailed:
			ie.Reason = x.Reason
		case domain.InstanceTerminated:
			ie.Reason = x.Reason
		}
		out = append(out, ie)
	}
	return out
}

// types returns instance id's event types, space-separated.
func types(evs []instEvent, id string) string {
	var out []string
	for _, ev := range evs {
		if ev.ID == id {
			out = append(out, strings.TrimPrefix(ev.Type, "instance."))
		}
	}
	return strings.Join(out, " ")
}

func (e *env) live() []string {
	var ids []string
	for _, v := range e.srv.Core().Instances().List() {
		ids = append(ids, v.ID)
	}
	return ids
}

// managed returns how many managed Pods and Secrets the namespace holds.
func (e *env) managed() (pods, secrets int) {
	e.t.Helper()
	opts := metav1.ListOptions{LabelSelector: managedOnly}
	pl, err := e.c.Client.CoreV1().Pods(e.ns).List(e.ctx, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	sl, err := e.c.Client.CoreV1().Secrets(e.ns).List(e.ctx, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return len(pl.Items), len(sl.Items)
}

// allGone is true once the namespace holds no managed Pod or Secret and
// the log no live instance.
func (e *env) allGone() bool {
	p, s := e.managed()
	return p == 0 && s == 0 && len(e.live()) == 0
}

func (e *env) gone(kind string, get func() error) bool {
	err := get()
	if err != nil && !apierrors.IsNotFound(err) {
		e.t.Fatalf("get %s: %v", kind, err)
	}
	return apierrors.IsNotFound(err)
}

func (e *env) podGone(name string) bool {
	return e.gone("pod "+name, func() error {
		_, err := e.c.Client.CoreV1().Pods(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		return err
	})
}

func (e *env) secretGone(name string) bool {
	return e.gone("secret "+name, func() error {
		_, err := e.c.Client.CoreV1().Secrets(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		return err
	})
}

// a. A queued job and no agent: a Pod appears with the agent's spec and
// its Secret; once the test kubelet runs it, the agent connects with the
// Secret's token and runs the job; idle, it is drained and its Pod and
// Secret deleted.
func testJobRunsInAPod(t *testing.T, c *k8stest.Cluster, agent string) {
	e := newEnv(t, c)
	e.manager(e.config())
	ids := e.submit("echo e2e-output-$((6*7))")

	wctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	pod, err := c.WaitPod(wctx, e.ns, managedOnly, func(*corev1.Pod) bool { return true })
	if err != nil {
		t.Fatalf("waiting for a Pod: %v", err)
	}
	live := e.live()
	if len(live) != 1 {
		t.Fatalf("live instances = %v, want one", live)
	}
	id := live[0]
	name := kubernetes.NamePrefix + id
	if pod.Name != name {
		t.Errorf("pod %s, want %s", pod.Name, name)
	}
	wantLabels := map[string]string{provider.LabelManaged: "true", provider.LabelOwner: e.owner,
		provider.LabelInstance: id, provider.LabelProvider: e2eProvider, "team": "e2e"}
	checkLabels(t, "pod", pod.Labels, wantLabels)
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("pod has %d containers, want 1", len(pod.Spec.Containers))
	}
	ctr := pod.Spec.Containers[0]
	if ctr.Image != e2eImage || pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("image %q, restartPolicy %s; want %s, Never", ctr.Image, pod.Spec.RestartPolicy, e2eImage)
	}
	vals := map[string]string{}
	for _, ev := range ctr.Env {
		switch {
		case ev.Name == "HODEI_TOKEN":
			ref := ev.ValueFrom
			if ev.Value != "" || ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != name || ref.SecretKeyRef.Key != "HODEI_TOKEN" {
				t.Errorf("HODEI_TOKEN = %+v, want a secretKeyRef to %s/HODEI_TOKEN", ev, name)
			}
		case ev.Value == e.token:
			t.Errorf("the join token is in the Pod spec as %s", ev.Name)
		case ev.ValueFrom == nil:
			vals[ev.Name] = ev.Value
		}
	}
	for k, want := range map[string]string{"HODEI_SERVER": e.srv.GRPCAddr(), "HODEI_INSECURE_PLAINTEXT": "true",
		"HODEI_SLOTS": "1", "HODEI_WORK_DIR": e2eWorkDir} {
		if vals[k] != want {
			t.Errorf("env %s = %q, want %q", k, vals[k], want)
		}
	}
	for _, l := range []string{"pool=" + e.pool, provider.AgentLabelInstance + "=" + id} {
		if !strings.Contains(","+vals["HODEI_LABELS"]+",", ","+l+",") {
			t.Errorf("HODEI_LABELS = %q, want it to hold %s", vals["HODEI_LABELS"], l)
		}
	}
	wantRes := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")}
	for which, rl := range map[string]corev1.ResourceList{"requests": ctr.Resources.Requests, "limits": ctr.Resources.Limits} {
		for k, want := range wantRes {
			if got := rl[k]; got.Cmp(want) != 0 || len(rl) != len(wantRes) {
				t.Errorf("%s = %v, want cpu 500m and memory 256Mi", which, rl)
			}
		}
	}
	// The Secret is created before the Pod and owned by it right after.
	var secret *corev1.Secret
	e.waitFor("the Secret to be owned by the Pod", 10*time.Second, func() bool {
		secret, err = c.Client.CoreV1().Secrets(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("credential Secret: %v", err)
		}
		return len(secret.OwnerReferences) == 1 && secret.OwnerReferences[0].UID == pod.UID
	})
	if string(secret.Data["HODEI_TOKEN"]) != e.token || len(secret.Data) != 1 {
		t.Errorf("secret data keys %d, HODEI_TOKEN matches: %v", len(secret.Data), string(secret.Data["HODEI_TOKEN"]) == e.token)
	}
	checkLabels(t, "secret", secret.Labels, wantLabels)
	// The driver's identity cannot read the Secret it wrote: RBAC holds.
	restricted, err := kclient.NewForConfig(e.identity)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restricted.CoreV1().Secrets(e.ns).Get(e.ctx, name, metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("get secret as the driver's identity = %v, want Forbidden", err)
	}
	if j := e.job(ids[0]); j.Status != domain.JobStatusQueued {
		t.Errorf("job %s before the Pod runs, want queued", j.Status)
	}

	// Only now does anything run the Pod.
	started := time.Now()
	e.kubelet(agent, nil)
	e.waitFor("the job to succeed", 60*time.Second, e.succeeded(ids...))
	t.Logf("job succeeded %v after the kubelet started", time.Since(started).Round(time.Millisecond))
	e.waitLog(ids[0], "e2e-output-42")
	j := e.job(ids[0])
	w, ok := e.srv.Core().Workers().Get(j.Worker)
	if !ok || w.Labels[provider.AgentLabelInstance] != id || w.Name != name {
		t.Errorf("the job ran on worker %s (name %q, labels %v), want the agent of Pod %s", j.Worker, w.Name, w.Labels, name)
	}

	idle := time.Now()
	e.waitFor("the idle instance's Pod and Secret to go", 30*time.Second, func() bool {
		return e.podGone(name) && e.secretGone(name) && len(e.live()) == 0
	})
	t.Logf("idle instance removed %v after the job succeeded (IdleTimeout 1s)", time.Since(idle).Round(time.Millisecond))
	evs := e.instanceEvents()
	if got, want := types(evs, id), "requested started connected terminated"; got != want {
		t.Errorf("instance %s events = %q, want %q", id, got, want)
	}
	if r := evs[len(evs)-1].Reason; !strings.Contains(r, "idle for 1s") {
		t.Errorf("terminated reason %q, want it to say idle for 1s", r)
	}
}

func checkLabels(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s label %s = %q, want %q (labels %v)", what, k, got[k], v, got)
		}
	}
}

// b. 20 jobs, at most 4 Pods: all succeed and the namespace never holds
// more than 4 Pods.
func testNeverMoreThanMaxPods(t *testing.T, c *k8stest.Cluster, agent string) {
	e := newEnv(t, c)
	e.kubelet(agent, nil)
	cfg := e.config()
	cfg.Max = 4
	n := 20
	if testing.Short() {
		n = 8
	}
	scripts := make([]string, n)
	for i := range scripts {
		scripts[i] = fmt.Sprintf("sleep 0.2; echo job-%d-done", i)
	}

	var peak, samples int
	stop, polled := make(chan struct{}), make(chan struct{})
	var once sync.Once
	stopPolling := func() { once.Do(func() { close(stop) }); <-polled }
	t.Cleanup(stopPolling) // when the test fails before the end
	go func() {
		defer close(polled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			pl, err := c.Client.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{LabelSelector: managedOnly})
			if err == nil {
				peak, samples = max(peak, len(pl.Items)), samples+1
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	start := time.Now()
	e.manager(cfg)
	ids := e.submit(scripts...)
	e.waitFor(fmt.Sprintf("%d jobs to succeed", n), 120*time.Second, e.succeeded(ids...))
	ran := time.Since(start)
	e.waitFor("every Pod and Secret to go", 30*time.Second, e.allGone)
	stopPolling()
	for i, id := range ids {
		e.waitLog(id, fmt.Sprintf("job-%d-done", i))
	}
	requested := 0
	for _, ev := range e.instanceEvents() {
		if ev.Type == domain.TypeInstanceRequested {
			requested++
		}
	}
	t.Logf("%d jobs in %v on %d instances; peak %d Pods over %d samples", n, ran.Round(time.Millisecond), requested, peak, samples)
	if peak > 4 || peak == 0 {
		t.Errorf("peak Pods = %d, want 1..4", peak)
	}
}

// c. Cancelling the only job waiting for a Pod that cannot be scheduled
// removes the Pod and its Secret, and the instance's end names the job.
func testCancelPendingJob(t *testing.T, c *k8stest.Cluster, agent string) {
	e := newEnv(t, c)
	e.kubelet(agent, func(*corev1.Pod) (bool, string) {
		return false, "0/1 nodes are available: 1 Insufficient memory."
	})
	cfg := e.config()
	cfg.StartTimeout = time.Minute
	e.manager(cfg)
	ids := e.submit("echo never")

	wctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	pod, err := c.WaitPod(wctx, e.ns, managedOnly, func(p *corev1.Pod) bool {
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Reason == corev1.PodReasonUnschedulable {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("waiting for an unschedulable Pod: %v", err)
	}
	id := pod.Labels[provider.LabelInstance]
	e.waitFor("the instance to be started", 10*time.Second, func() bool {
		v, ok := e.srv.Core().Instances().Get(id)
		return ok && v.Status == domain.InstanceStatusStarted
	})
	if _, err := e.srv.Core().Cancel(e.ctx, ids[0], "alice", "not needed"); err != nil {
		t.Fatal(err)
	}
	cancelled := time.Now()
	e.waitFor("the Pod and Secret to go", 20*time.Second, func() bool {
		return e.podGone(pod.Name) && e.secretGone(pod.Name) && len(e.live()) == 0
	})
	t.Logf("pending instance removed %v after the cancel", time.Since(cancelled).Round(time.Millisecond))
	evs := e.instanceEvents()
	if got, want := types(evs, id), "requested started terminated"; got != want {
		t.Errorf("instance %s events = %q, want %q", id, got, want)
	}
	if r := evs[len(evs)-1].Reason; !strings.Contains(r, ids[0]) {
		t.Errorf("terminated reason %q, want it to name job %s", r, ids[0])
	}
}

// d. A Pod the scheduler refuses: after StartTimeout the instance fails
// with the scheduler's message, its Pod is deleted, the job is parked
// with the message, and the backoff spaces the retries.
func testUnschedulable(t *testing.T, c *k8stest.Cluster, agent string) {
	const msg = "0/1 nodes are available: 1 Insufficient cpu."
	e := newEnv(t, c)
	e.kubelet(agent, func(*corev1.Pod) (bool, string) { return false, msg })
	cfg := e.config()
	cfg.StartTimeout = 2 * time.Second
	cfg.BackoffMin, cfg.BackoffMax = 3*time.Second, 6*time.Second
	m := e.manager(cfg)
	ids := e.submit("echo never")

	e.waitFor("the job to be parked with the scheduler's message", 30*time.Second, func() bool {
		return strings.Contains(e.job(ids[0]).Parked, msg)
	})
	parkedAt := time.Now()
	parked := e.job(ids[0]).Parked
	t.Logf("parked: %s", parked)
	if !strings.Contains(parked, "retrying in 3s") {
		t.Errorf("parked reason %q, want it to say when it retries", parked)
	}
	evs := e.instanceEvents()
	var first instEvent
	for _, ev := range evs {
		if ev.Type == domain.TypeInstanceFailed {
			first = ev
			break
		}
	}
	if want := "did not connect within 2s: Unschedulable: " + msg; !strings.Contains(first.Reason, want) {
		t.Errorf("instance failed with %q, want it to hold %q", first.Reason, want)
	}
	if got := types(evs, first.ID); got != "requested started failed" {
		t.Errorf("instance %s events = %q, want requested started failed", first.ID, got)
	}
	name := kubernetes.NamePrefix + first.ID
	if !e.podGone(name) || !e.secretGone(name) {
		t.Errorf("the failed instance's Pod or Secret is still there")
	}
	if st := m.Status(); st.Failures < 1 || !strings.Contains(st.LastError, msg) || st.NextTry.IsZero() {
		t.Errorf("Status() = failures %d, last error %q, next try %v", st.Failures, st.LastError, st.NextTry)
	}

	// Backoff 3s after the first failure, then 6s: in the next 4s at most
	// one more instance is requested (without backoff: one every ~2s).
	time.Sleep(4*time.Second - time.Since(parkedAt))
	requested, failed := 0, 0
	for _, ev := range e.instanceEvents() {
		switch ev.Type {
		case domain.TypeInstanceRequested:
			requested++
		case domain.TypeInstanceFailed:
			failed++
		}
	}
	t.Logf("%d instances requested, %d failed in the ~4s after the first failure", requested-1, failed-1)
	if requested > 2 || failed > 2 {
		t.Errorf("%d requested and %d failed instances 4s after the first failure with backoff 3s..6s and start timeout 2s; want at most 2 each",
			requested, failed)
	}

	// Cancelling the job leaves nothing behind.
	if _, err := e.srv.Core().Cancel(e.ctx, ids[0], "alice", "test over"); err != nil {
		t.Fatal(err)
	}
	e.waitFor("every Pod and Secret to go", 20*time.Second, e.allGone)
}

// e. Pods and Secrets of this owner that the log does not know (a crash
// after creating them, before recording the instance; a crash between a
// Secret and its Pod) are removed when a Manager starts; another owner's
// are left alone.
func testSweepAtStart(t *testing.T, c *k8stest.Cluster) {
	e := newEnv(t, c)
	req := func(id, owner string) provider.StartRequest {
		return provider.StartRequest{InstanceID: id, Provider: e2eProvider, Owner: owner, Image: e2eImage,
			Env: map[string]string{"HODEI_SERVER": e.srv.GRPCAddr()}, SecretEnv: map[string]string{"HODEI_TOKEN": "stale"}}
	}
	for _, r := range []provider.StartRequest{req("stray-1", e.owner), req("theirs-1", "someone-else")} {
		if _, err := e.d.Start(e.ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if err := e.d.RemoveAll(context.Background(), "someone-else"); err != nil {
			t.Error(err)
		}
	})
	lone := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: kubernetes.NamePrefix + "lone-2", Labels: map[string]string{
		provider.LabelManaged: "true", provider.LabelOwner: e.owner, provider.LabelInstance: "lone-2", provider.LabelProvider: e2eProvider}},
		Data: map[string][]byte{"HODEI_TOKEN": []byte("stale")}}
	if _, err := c.Client.CoreV1().Secrets(e.ns).Create(e.ctx, lone, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	started := time.Now()
	e.manager(e.config())
	e.waitFor("the stray Pod and Secrets to go", 20*time.Second, func() bool {
		return e.podGone(kubernetes.NamePrefix+"stray-1") && e.secretGone(kubernetes.NamePrefix+"stray-1") &&
			e.secretGone(kubernetes.NamePrefix+"lone-2")
	})
	t.Logf("swept %v after the Manager started", time.Since(started).Round(time.Millisecond))
	if e.podGone(kubernetes.NamePrefix+"theirs-1") || e.secretGone(kubernetes.NamePrefix+"theirs-1") {
		t.Error("the sweep removed another owner's Pod or Secret")
	}
	if evs := e.instanceEvents(); len(evs) != 0 {
		t.Errorf("instance events %v, want none: the sweep removes what the log does not know without recording it", evs)
	}
}
func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
