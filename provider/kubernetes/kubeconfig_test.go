package kubernetes

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Relative paths are relative to the kubeconfig's directory; the current
// context picks cluster, user and namespace.
func TestLoadKubeconfig(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t, "user")
	writeFile(t, filepath.Join(dir, "pki", "ca.crt"), string(certPEM))
	writeFile(t, filepath.Join(dir, "pki", "user.crt"), string(certPEM))
	writeFile(t, filepath.Join(dir, "token"), "file-token\n")
	path := writeFile(t, filepath.Join(dir, "config"), `apiVersion: v1
kind: Config
current-context: prod
preferences: {}
clusters:
- name: other
  cluster: {server: "https://other:6443"}
- name: prod
  cluster:
    server: https://k8s.example.com:6443/prefix
    certificate-authority: pki/ca.crt
    tls-server-name: kubernetes.default
    proxy-url: http://proxy:3128
contexts:
- name: prod
  context: {cluster: prod, user: admin, namespace: jobs}
- name: dev
  context: {cluster: other, user: dev}
users:
- name: admin
  user:
    client-certificate: pki/user.crt
    client-key-data: `+base64.StdEncoding.EncodeToString(keyPEM)+`
    tokenFile: token
    as: someone
    as-groups: [a, b]
- name: dev
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: ./bin/cred
      args: [get, token]
      env: [{name: A, value: "1"}]
      provideClusterInfo: true
      interactiveMode: IfAvailable
`)
	got, err := loadKubeconfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Connection{Server: "https://k8s.example.com:6443/prefix", TLSServerName: "kubernetes.default", CAData: certPEM,
		CertData: certPEM, KeyData: keyPEM, ProxyURL: "http://proxy:3128", TokenFile: filepath.Join(dir, "token"),
		Impersonate: "someone", ImpersonateGroups: []string{"a", "b"}, Namespace: "jobs"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("loadKubeconfig() (-want +got):\n%s", diff)
	}

	writeFile(t, path, strings.Replace(mustRead(t, path), "current-context: prod", "current-context: dev", 1))
	got, err = loadKubeconfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want = Connection{Server: "https://other:6443", Exec: &ExecConfig{Command: filepath.Join(dir, "bin", "cred"),
		Args: []string{"get", "token"}, Env: []string{"A=1"}, APIVersion: execV1beta1, ProvideClusterInfo: true}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("loadKubeconfig(dev) (-want +got):\n%s", diff)
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Bad kubeconfigs fail with an error naming the field.
func TestKubeconfigErrors(t *testing.T) {
	const base = `
clusters:
- name: c
  cluster: {server: "https://k8s:6443"}
contexts:
- name: ctx
  context: {cluster: c, user: u}
`
	tests := []struct{ name, yaml, want string }{
		{"no current context", base + "users: [{name: u, user: {}}]\n", "current-context: not set"},
		{"missing context", "current-context: gone\n" + base, `current-context "gone": no such context`},
		{"missing user", "current-context: ctx\n" + base, `user "u": no such user`},
		{"missing cluster", "current-context: ctx\ncontexts: [{name: ctx, context: {cluster: nope}}]\n", `cluster "nope": no such cluster`},
		{"no server", "current-context: ctx\ncontexts: [{name: ctx, context: {cluster: c}}]\nclusters: [{name: c, cluster: {}}]\n", "server: not set"},
		{"auth provider", "current-context: ctx\n" + base + "users: [{name: u, user: {auth-provider: {name: gcp}}}]\n",
			`auth-provider "gcp" is not supported`},
		{"ca file and data", "current-context: ctx\ncontexts: [{name: ctx, context: {cluster: c}}]\n" +
			"clusters: [{name: c, cluster: {server: s, certificate-authority: ca.crt, certificate-authority-data: eA==}}]\n",
			"certificate-authority-data and certificate-authority are both set"},
		{"ca file missing", "current-context: ctx\ncontexts: [{name: ctx, context: {cluster: c}}]\n" +
			"clusters: [{name: c, cluster: {server: s, certificate-authority: ca.crt}}]\n", "certificate-authority: open"},
		{"cert without key", "current-context: ctx\n" + base + "users: [{name: u, user: {client-certificate-data: eA==}}]\n",
			"client-certificate without client-key"},
		{"two methods", "current-context: ctx\n" + base + "users: [{name: u, user: {token: t, username: a, password: b}}]\n",
			"token, username/password are all set"},
		{"exec version", "current-context: ctx\n" + base + "users: [{name: u, user: {exec: {command: x, apiVersion: client.authentication.k8s.io/v1alpha1}}}]\n",
			`exec.apiVersion "client.authentication.k8s.io/v1alpha1"`},
		{"exec interactive", "current-context: ctx\n" + base + "users: [{name: u, user: {exec: {command: x, apiVersion: client.authentication.k8s.io/v1, interactiveMode: Always}}}]\n",
			"exec.interactiveMode Always"},
		{"bad yaml", "current-context: [\n", "parse"},
		{"bad base64", "current-context: ctx\n" + base + "users: [{name: u, user: {client-key-data: '!!'}}]\n", "parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, filepath.Join(t.TempDir(), "config"), tt.yaml)
			_, err := New(Config{Kubeconfig: path})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("New() = %v, want an error naming %s and %q", err, path, tt.want)
			}
		})
	}
}

// New with a kubeconfig verifies the server against its CA and server
// name, and uses the context's namespace.
func TestNewKubeconfigTLS(t *testing.T) {
	var got []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.Path, r.Header.Get("Authorization"))
		_, _ = w.Write([]byte(`{"items":[]}`))
	}))
	defer srv.Close()
	ca := pemCert(srv.Certificate().Raw)
	path := writeFile(t, filepath.Join(t.TempDir(), "config"), `current-context: ctx
contexts: [{name: ctx, context: {cluster: c, user: u, namespace: team-a}}]
clusters: [{name: c, cluster: {server: "`+srv.URL+`", tls-server-name: example.com, certificate-authority-data: `+
		base64.StdEncoding.EncodeToString(ca)+`}}]
users: [{name: u, user: {username: admin, password: secret}}]
`)
	d, err := New(Config{Kubeconfig: path})
	if err != nil {
		t.Fatal(err)
	}
	if d.Namespace() != "team-a" {
		t.Errorf("Namespace() = %q, want team-a", d.Namespace())
	}
	if _, err := d.List(context.Background(), owner); err != nil {
		t.Fatal(err)
	}
	if want := []string{"/api/v1/namespaces/team-a/pods", "Basic YWRtaW46c2VjcmV0"}; !cmp.Equal(got, want) {
		t.Errorf("requests = %q, want %q", got, want)
	}
	// Another server name does not match the certificate.
	writeFile(t, path, strings.Replace(mustRead(t, path), "example.com", "wrong.example", 1))
	if d, err = New(Config{Kubeconfig: path}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.List(context.Background(), owner); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("List() with the wrong server name = %v, want a certificate error", err)
	}
}

// In a Pod: server from the environment, CA, namespace and a token file
// that is read again after a minute.
func TestInCluster(t *testing.T) {
	dir := t.TempDir()
	certPEM, _ := selfSigned(t, "ca")
	writeFile(t, filepath.Join(dir, "ca.crt"), string(certPEM))
	writeFile(t, filepath.Join(dir, "namespace"), "hodei\n")
	writeFile(t, filepath.Join(dir, "token"), "tok-1")
	env := map[string]string{"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
	conn, err := inCluster(func(k string) string { return env[k] }, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Connection{Server: "https://[fd00::1]:443", CAData: certPEM, TokenFile: filepath.Join(dir, "token"), Namespace: "hodei"}
	if diff := cmp.Diff(want, conn); diff != "" {
		t.Errorf("inCluster() (-want +got):\n%s", diff)
	}
	if _, err := inCluster(func(string) string { return "" }, dir); err != errNotInCluster {
		t.Errorf("inCluster(no env) = %v, want errNotInCluster", err)
	}

	now := time.Unix(0, 0)
	f := &tokenFile{path: conn.TokenFile, now: func() time.Time { return now }}
	check := func(want string) {
		t.Helper()
		if got, err := f.token(); got != want || err != nil {
			t.Errorf("token() = %q, %v, want %q", got, err, want)
		}
	}
	check("tok-1")
	writeFile(t, conn.TokenFile, "tok-2")
	now = now.Add(30 * time.Second)
	check("tok-1")
	now = now.Add(time.Minute)
	check("tok-2")
	// A file being swapped keeps the last token.
	if err := os.Remove(conn.TokenFile); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	check("tok-2")
}

func FuzzKubeconfig(f *testing.F) {
	f.Add([]byte("current-context: c\ncontexts: [{name: c, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: s}}]\nusers: [{name: u, user: {token: t}}]\n"))
	f.Add([]byte("current-context: c\ncontexts: [{name: c, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: s}}]\nusers: [{name: u, user: {exec: {command: x, apiVersion: client.authentication.k8s.io/v1}}}]\n"))
	f.Add([]byte("{}"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		// File references are read: keep away from endless files.
		for _, p := range []string{"/dev", "/proc", "/sys"} {
			if bytes.Contains(b, []byte(p)) {
				t.Skip()
			}
		}
		conn, err := parseKubeconfig(b, dir)
		if err != nil {
			return
		}
		if conn.Server == "" {
			t.Errorf("connection() = %+v without a server and no error", conn)
		}
	})
}
