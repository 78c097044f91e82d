// Package k8stest runs a real etcd and kube-apiserver for tests, and acts
// as the scheduler and kubelet that such a bare control plane lacks.
//
// The binaries come from $HODEI_K8S_BIN (`export HODEI_K8S_BIN=$(make -s
// k8s-bins)`). Without it the tests that need a cluster skip, unless
// CI=true, where they fail: CI must not silently lose them.
//
// One control plane serves a whole test package; it starts on the first
// Get (about 4 s) and stops when TestMain's Main returns:
//
//	func TestMain(m *testing.M) { os.Exit(k8stest.Main(m)) }
//
//	func TestX(t *testing.T) {
//		c := k8stest.Get(t)
//		ns := c.NewNamespace(t)
//		... create Pods in ns with c.RESTConfig() ...
//		c.BindPod(ctx, ns, pod, "node-1")
//		c.SetRunning(ctx, ns, pod)
//		env, _ := c.PodEnv(ctx, ns, pod) // run the agent locally with it
//	}
//
// What differs from a real cluster: nothing schedules, runs, garbage
// collects or deletes namespaces. Pods stay Pending until BindPod, phases
// change only through the Set* helpers, a bound Pod deleted with a grace
// period stays Terminating (delete with grace 0, as ForceDelete does), and
// ownerReferences are not followed.
package k8stest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// EnvBin names the directory holding the kube-apiserver and etcd
// binaries.
const EnvBin = "HODEI_K8S_BIN"

// startTimeout bounds the start of both servers; `go test ./...` runs
// packages in parallel on few cores, so it is generous.
const startTimeout = 2 * time.Minute

var shared struct {
	once sync.Once
	mu   sync.Mutex
	c    *Cluster
	err  error
}

// Main runs the package's tests and stops the shared control plane, if
// a test started one. Use it as TestMain's body.
func Main(m *testing.M) int {
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c != nil {
		if err := shared.c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "k8stest: stop:", err)
		}
		shared.c = nil
	}
	return code
}

// Get returns the package's control plane, starting it on first use. It
// skips t when $HODEI_K8S_BIN is unset (fails it under CI=true) and fails
// t when the servers cannot start. The package must use Main in TestMain,
// or the servers outlive the tests until the test binary exits.
func Get(t testing.TB) *Cluster {
	t.Helper()
	bin := os.Getenv(EnvBin)
	if bin == "" {
		msg := EnvBin + " is unset: run `export " + EnvBin + "=$(make -s k8s-bins)` to test against a real kube-apiserver"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (required when CI=true)")
		}
		t.Skip(msg)
	}
	shared.once.Do(func() {
		c, err := Start(bin)
		shared.mu.Lock()
		shared.c, shared.err = c, err
		shared.mu.Unlock()
	})
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.err != nil {
		t.Fatalf("k8stest: %v", shared.err)
	}
	if shared.c == nil {
		t.Fatal("k8stest: control plane already stopped")
	}
	return shared.c
}

// Cluster is a running etcd + kube-apiserver on loopback ports.
type Cluster struct {
	// Client is an admin client (system:masters).
	Client kubernetes.Interface

	rc         *rest.Config
	dir        string
	kubeconfig string
	etcd       *proc
	apiserver  *proc
}

// proc is a running server; done is closed once it exited and was reaped.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts etcd and kube-apiserver from the binaries in bin, in a
// fresh temporary directory, and waits until the API server is ready.
// Stop them with Stop. Most tests want Get instead.
func Start(bin string) (*Cluster, error) {
	var err error
	for range 3 { // a free port may be taken again before the server binds it
		var c *Cluster
		c, err = start(bin)
		if err == nil {
			return c, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, err
}

func start(bin string) (_ *Cluster, err error) {
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("%s: %w (build it with `make k8s-bins`)", b, err)
		}
	}
	sweep()
	dir, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
		}
	}()
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]
	token, err := writeCredentials(dir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()

	ec := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	ep := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	c.etcd, err = c.spawn(filepath.Join(bin, "etcd"), "etcd.log",
		"--name", "default", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", ec, "--advertise-client-urls", ec,
		"--listen-peer-urls", ep, "--initial-advertise-peer-urls", ep,
		"--initial-cluster", "default="+ep,
		"--unsafe-no-fsync", "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	if err := c.waitFor(ctx, c.etcd, func(ctx context.Context) error { return etcdHealthy(ctx, ec) }); err != nil {
		return nil, err
	}

	c.apiserver, err = c.spawn(filepath.Join(bin, "kube-apiserver"), "kube-apiserver.log",
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(apiPort), "--cert-dir="+filepath.Join(dir, "certs"),
		"--etcd-servers="+ec, "--service-cluster-ip-range=10.0.0.0/24",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		// The kubernetes Service's endpoint may not be loopback; without
		// this the server complains every few seconds.
		"--endpoint-reconciler-type=none",
		"--profiling=false")
	if err != nil {
		return nil, err
	}
	c.rc = &rest.Config{
		Host:            "https://127.0.0.1:" + strconv.Itoa(apiPort),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}, // --cert-dir: self-signed
		QPS:             100,
		Burst:           200,
	}
	if c.Client, err = kubernetes.NewForConfig(c.rc); err != nil {
		return nil, err
	}
	if err := c.waitFor(ctx, c.apiserver, func(ctx context.Context) error {
		b, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(b) != "ok" {
			err = fmt.Errorf("readyz: %s", b)
		}
		return err
	}); err != nil {
		return nil, err
	}
	c.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.kubeconfig, []byte(kubeconfig(c.rc.Host, token)), 0o600); err != nil {
		return nil, err
	}
	return c, nil
}

// tempPrefix names the servers' temporary directories.
const tempPrefix = "hodei-k8stest-"

// sweep removes the directories of test binaries that died without Stop
// (a test timeout panics past TestMain): etcd preallocates 64 MB of WAL.
func sweep() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "pid"))
		if err != nil {
			continue // being created, or not ours
		}
		pid, err := strconv.Atoi(string(b))
		if err != nil || syscall.Kill(pid, 0) == syscall.ESRCH {
			_ = os.RemoveAll(dir)
		}
	}
}

// RESTConfig returns a copy of the admin client configuration.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.rc) }

// Kubeconfig returns the path of a kubeconfig file for the admin user,
// whose context's namespace is "default".
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// Stop stops both servers and removes their data.
func (c *Cluster) Stop() error {
	for _, p := range []*proc{c.apiserver, c.etcd} {
		if p == nil {
			continue
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	return os.RemoveAll(c.dir)
}

// spawn starts a server with its output in the file named log under the
// cluster's directory.
func (c *Cluster) spawn(path, log string, args ...string) (*proc, error) {
	f, err := os.Create(filepath.Join(c.dir, log))
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own descriptor
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(path), err)
	}
	p := &proc{name: filepath.Base(path), cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // an exit shows in the log; Stop's SIGTERM is expected
		close(p.done)
	}()
	return p, nil
}

// waitFor polls ready until it succeeds, ctx ends or a server exits; the
// error then carries the end of the server's log.
func (c *Cluster) waitFor(ctx context.Context, p *proc, ready func(context.Context) error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = ready(rctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %s", p.name, c.logTail(p.name))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %v: %v\n%s", p.name, startTimeout, last, c.logTail(p.name))
		case <-tick.C:
		}
	}
}

func (c *Cluster) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, name+".log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

func etcdHealthy(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd health: %s", resp.Status)
	}
	return nil
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeCredentials writes the service account signing key (ECDSA P-256:
// no openssl, fast to generate) and a static token file giving a random
// token system:masters; it returns the token.
func writeCredentials(dir string) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", err
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return "", err
	}
	token := hex.EncodeToString(tok)
	files := map[string][]byte{
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		"tokens.csv": []byte(token + `,admin,admin-uid,"system:masters"` + "\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return "", err
		}
	}
	return token, nil
}

func kubeconfig(host, token string) string {
	return `apiVersion: v1
kind: Config
clusters:
- name: k8stest
  cluster:
    server: ` + host + `
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: ` + token + `
contexts:
- name: k8stest
  context:
    cluster: k8stest
    user: admin
    namespace: default
current-context: k8stest
`
}
