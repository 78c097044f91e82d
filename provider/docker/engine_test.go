package docker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hodei-jobs/hodei/provider"
)

// fakeEngine is an Engine API stand-in on a unix socket: it answers
// /_ping with apiVersion and every other request with reply, and records
// the requests.
type fakeEngine struct {
	apiVersion string
	reply      func(w http.ResponseWriter, r *http.Request)

	mu   sync.Mutex
	reqs []string // "GET /v1.41/containers/json?..."
	body [][]byte
}

func (f *fakeEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, r.Method+" "+r.URL.RequestURI())
	f.body = append(f.body, b)
	f.mu.Unlock()
	if r.URL.Path == "/_ping" {
		if f.apiVersion != "" {
			w.Header().Set("Api-Version", f.apiVersion)
		}
		w.Write([]byte("OK"))
		return
	}
	f.reply(w, r)
}

func (f *fakeEngine) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

// serveUnix serves f on a socket in a temp dir and returns its host.
func serveUnix(t *testing.T, f *fakeEngine) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dk") // t.TempDir() can exceed a socket path's 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: f}}
	srv.Start()
	t.Cleanup(srv.Close)
	return "unix://" + sock
}

func jsonReply(status int, v any) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
}

func TestNegotiate(t *testing.T) {
	tests := []struct{ server, want string }{
		{"", "1.24"},
		{"1.41", "1.41"},
		{"1.9", "1.9"},
		{"1.51", "1.51"},
		{"1.52", "1.51"},
		{"1.100", "1.51"},
		{"2.0", "1.51"},
	}
	for _, tt := range tests {
		if got := negotiate(tt.server); got != tt.want {
			t.Errorf("negotiate(%q) = %q, want %q", tt.server, got, tt.want)
		}
	}
}

func TestNewEngineHost(t *testing.T) {
	t.Setenv("DOCKER_CERT_PATH", "")
	t.Setenv("DOCKER_API_VERSION", "")
	tests := []struct {
		host, env        string
		scheme, addr     string
		basePath, errSub string
	}{
		{host: "", env: "", scheme: "http", addr: unixHost},
		{host: "", env: "tcp://10.0.0.1:2375", scheme: "http", addr: "10.0.0.1:2375"},
		{host: "tcp://h:2375/prefix/", env: "unix:///x.sock", scheme: "http", addr: "h:2375", basePath: "/prefix"},
		{host: "unix:///run/docker.sock", env: "tcp://ignored:1", scheme: "http", addr: unixHost},
		{host: "https://h:2376", errSub: `scheme "https" is not supported`},
		{host: "ssh://me@h", errSub: `scheme "ssh" is not supported`},
		{host: "/var/run/docker.sock", errSub: "want unix://"},
		{host: "unix://", errSub: "want unix://"},
		{host: "unix:///" + strings.Repeat("d", 200), errSub: "longer than"},
	}
	for _, tt := range tests {
		t.Setenv("DOCKER_HOST", tt.env)
		e, err := newEngine(tt.host)
		if tt.errSub != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errSub) {
				t.Errorf("newEngine(%q) = %v, want an error containing %q", tt.host, err, tt.errSub)
			}
			continue
		}
		if err != nil {
			t.Errorf("newEngine(%q) = %v", tt.host, err)
			continue
		}
		if e.scheme != tt.scheme || e.addr != tt.addr || e.basePath != tt.basePath {
			t.Errorf("newEngine(%q) with DOCKER_HOST=%q = %s://%s%s, want %s://%s%s", tt.host, tt.env,
				e.scheme, e.addr, e.basePath, tt.scheme, tt.addr, tt.basePath)
		}
	}
}

func TestEngineRequests(t *testing.T) {
	t.Setenv("DOCKER_API_VERSION", "")
	f := &fakeEngine{apiVersion: "1.41"}
	f.reply = func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1.41/containers/json":
			jsonReply(200, []map[string]any{{"Id": "c1", "Created": 1700000000, "State": "exited",
				"Labels": map[string]string{provider.LabelInstance: "i-1"}, "Names": []string{"/x"}}})(w, r)
		case "/v1.41/containers/c1/json":
			jsonReply(200, map[string]any{"Id": "c1", "State": map[string]any{"Status": "exited",
				"ExitCode": 137, "OOMKilled": true}})(w, r)
		case "/v1.41/containers/create":
			jsonReply(201, map[string]any{"Id": "c2", "Warnings": []string{}})(w, r)
		case "/v1.41/containers/c2/start":
			w.WriteHeader(http.StatusNoContent)
		default:
			jsonReply(404, map[string]string{"message": "page not found"})(w, r)
		}
	}
	d, err := New(Config{Host: serveUnix(t, f), ExtraHosts: []string{"h:1.2.3.4"}, Network: "net1"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := t.Context()

	got, err := d.List(ctx, "o1")
	if err != nil {
		t.Fatalf("List() = %v", err)
	}
	want := []provider.Instance{{InstanceID: "i-1", Handle: "c1", Phase: provider.PhaseExited,
		Reason: "exited with code 137 (OOMKilled)", Created: time.Unix(1700000000, 0)}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List() (-want +got):\n%s", diff)
	}
	h, err := d.Start(ctx, provider.StartRequest{InstanceID: "i-2", Owner: "o1", Provider: "p", Image: "img:1",
		Env: map[string]string{"B": "2", "A": "1"}, CPUMillis: 1500, MemoryBytes: 1 << 20})
	if err != nil || h != "c2" {
		t.Fatalf("Start() = %q, %v, want c2", h, err)
	}
	wantReqs := []string{
		"GET /_ping",
		`GET /v1.41/containers/json?all=1&filters=%7B%22label%22%3A%7B%22hodei.managed%3Dtrue%22%3Atrue%2C%22hodei.owner%3Do1%22%3Atrue%7D%7D`,
		"GET /v1.41/containers/c1/json",
		"POST /v1.41/containers/create?name=hodei-agent-i-2",
		"POST /v1.41/containers/c2/start",
	}
	if diff := cmp.Diff(wantReqs, f.requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	var create map[string]any
	if err := json.Unmarshal(f.body[3], &create); err != nil {
		t.Fatal(err)
	}
	wantCreate := map[string]any{
		"Hostname": "hodei-i-2",
		"Image":    "img:1",
		"Env":      []any{"A=1", "B=2"},
		"Labels": map[string]any{provider.LabelManaged: "true", provider.LabelOwner: "o1",
			provider.LabelInstance: "i-2", provider.LabelProvider: "p"},
		"HostConfig": map[string]any{
			"NetworkMode":   "net1",
			"ExtraHosts":    []any{"h:1.2.3.4"},
			"AutoRemove":    false,
			"RestartPolicy": map[string]any{"Name": "no"},
			"NanoCpus":      1.5e9,
			"Memory":        float64(1 << 20),
			"MemorySwap":    float64(1 << 20),
		},
	}
	if diff := cmp.Diff(wantCreate, create); diff != "" {
		t.Errorf("create body (-want +got):\n%s", diff)
	}
}

func TestEngineErrors(t *testing.T) {
	t.Setenv("DOCKER_API_VERSION", "")
	f := &fakeEngine{apiVersion: "1.52"} // newer than the driver: it asks for 1.51
	f.reply = func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1.51/containers/create":
			jsonReply(404, map[string]string{"message": "No such image: img:1"})(w, r)
		case "/v1.51/images/img:1/json":
			jsonReply(404, map[string]string{"message": "No such image: img:1"})(w, r)
		case "/v1.51/containers/gone":
			jsonReply(404, map[string]string{"message": "No such container: gone"})(w, r)
		case "/v1.51/containers/busy":
			jsonReply(409, map[string]string{"message": "removal of container busy is already in progress"})(w, r)
		case "/v1.51/containers/json":
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("<html>bad gateway</html>\n"))
		case "/v1.51/networks/bridge":
			jsonReply(200, map[string]any{"IPAM": map[string]any{"Config": []any{
				map[string]string{"Subnet": "fd00::/64"}, map[string]string{"Subnet": "172.18.0.0/16"}}}})(w, r)
		case "/v1.51/networks/v4gw":
			jsonReply(200, map[string]any{"IPAM": map[string]any{"Config": []any{
				map[string]string{"Subnet": "172.19.0.0/16", "Gateway": "172.19.0.254"}}}})(w, r)
		default:
			jsonReply(500, map[string]string{})(w, r)
		}
	}
	d, err := New(Config{Host: serveUnix(t, f)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := t.Context()

	_, err = d.Start(ctx, provider.StartRequest{InstanceID: "i-1", Owner: "o", Image: "img:1"})
	if !errors.Is(err, provider.ErrImage) || !strings.Contains(err.Error(), "img:1") {
		t.Errorf("Start(missing image) = %v, want ErrImage naming img:1", err)
	}
	if err := d.Remove(ctx, "gone"); err != nil {
		t.Errorf("Remove(gone) = %v, want nil", err)
	}
	err = d.Remove(ctx, "busy")
	if err == nil || !strings.Contains(err.Error(), "docker remove busy: removal of container busy is already in progress (engine: 409 Conflict)") {
		t.Errorf("Remove(busy) = %v, want the engine's conflict", err)
	}
	_, err = d.List(ctx, "o")
	if err == nil || errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), "docker list: <html>bad gateway</html> (engine: 502 Bad Gateway)") {
		t.Errorf("List() = %v, want the 502 with its body", err)
	}
	_, err = d.eng.inspectContainer(ctx, "x")
	if err == nil || !strings.Contains(err.Error(), "no error message (engine: 500") {
		t.Errorf("inspectContainer() = %v, want a 500 without message", err)
	}
	if gw, err := d.Gateway(ctx, "bridge"); err != nil || gw.String() != "172.18.0.1" {
		t.Errorf("Gateway(bridge) = %v, %v, want 172.18.0.1 (first of the IPv4 subnet)", gw, err)
	}
	if gw, err := d.Gateway(ctx, "v4gw"); err != nil || gw.String() != "172.19.0.254" {
		t.Errorf("Gateway(v4gw) = %v, %v, want 172.19.0.254", gw, err)
	}
	if reqs := f.requests(); reqs[0] != "GET /_ping" || len(reqs) < 2 || !strings.HasPrefix(reqs[1], "POST /v1.51/") {
		t.Errorf("requests = %q, want a ping, then v1.51", reqs)
	}
}

// TestEngineVersionFromEnv checks that DOCKER_API_VERSION skips the
// negotiation.
func TestEngineVersionFromEnv(t *testing.T) {
	t.Setenv("DOCKER_API_VERSION", "v1.44")
	f := &fakeEngine{apiVersion: "1.41", reply: jsonReply(200, []any{})}
	d, err := New(Config{Host: serveUnix(t, f)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.List(t.Context(), "o"); err != nil {
		t.Fatalf("List() = %v", err)
	}
	if reqs := f.requests(); len(reqs) != 1 || !strings.HasPrefix(reqs[0], "GET /v1.44/containers/json?") {
		t.Errorf("requests = %q, want one at v1.44", reqs)
	}
}

// TestEngineTLS checks a tcp:// engine with DOCKER_CERT_PATH and
// DOCKER_TLS_VERIFY, as the docker CLI sets them.
func TestEngineTLS(t *testing.T) {
	f := &fakeEngine{apiVersion: "1.41"}
	srv := httptest.NewUnstartedServer(f)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed handshakes below
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca, 0o600); err != nil {
		t.Fatal(err)
	}
	writeClientCert(t, dir)
	t.Setenv("DOCKER_CERT_PATH", dir)
	t.Setenv("DOCKER_TLS_VERIFY", "1")
	t.Setenv("DOCKER_API_VERSION", "")
	d, err := New(Config{Host: "tcp://" + srv.Listener.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Ping(t.Context()); err != nil {
		t.Errorf("Ping() over TLS = %v", err)
	}

	// A CA that did not sign the engine's certificate: verified, it fails
	// as an unreachable engine; unverified (no DOCKER_TLS_VERIFY), it
	// connects, as with the docker CLI.
	wrong := t.TempDir()
	writeClientCert(t, wrong)
	cert, err := os.ReadFile(filepath.Join(wrong, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wrong, "ca.pem"), cert, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CERT_PATH", wrong)
	for _, verify := range []string{"1", ""} {
		t.Setenv("DOCKER_TLS_VERIFY", verify)
		d, err := New(Config{Host: "tcp://" + srv.Listener.Addr().String()})
		if err != nil {
			t.Fatal(err)
		}
		err = d.Ping(t.Context())
		d.Close()
		if verify != "" && !errors.Is(err, provider.ErrUnavailable) {
			t.Errorf("Ping() with the wrong CA, verified = %v, want ErrUnavailable", err)
		}
		if verify == "" && err != nil {
			t.Errorf("Ping() with the wrong CA, not verified = %v, want nil", err)
		}
	}

	t.Setenv("DOCKER_CERT_PATH", t.TempDir())
	if _, err := New(Config{Host: "tcp://" + srv.Listener.Addr().String()}); err == nil ||
		!strings.Contains(err.Error(), "DOCKER_CERT_PATH") {
		t.Errorf("New() with an empty DOCKER_CERT_PATH = %v, want an error naming it", err)
	}
}

// writeClientCert writes a self-signed cert.pem and key.pem into dir.
func writeClientCert(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestEngineCancelled checks that a cancelled call returns ctx's error,
// not ErrUnavailable.
func TestEngineCancelled(t *testing.T) {
	t.Setenv("DOCKER_API_VERSION", "")
	f := &fakeEngine{apiVersion: "1.41", reply: jsonReply(200, []any{})}
	d, err := New(Config{Host: serveUnix(t, f)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := d.List(ctx, "o"); !errors.Is(err, context.Canceled) || errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("List(cancelled) = %v, want context.Canceled only", err)
	}
}
