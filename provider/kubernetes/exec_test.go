package kubernetes

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// plugin writes a credential plugin script that counts its runs in dir
// and prints the ExecCredential of out(run).
func plugin(t *testing.T, dir string, out func(run int) string) (command string) {
	t.Helper()
	for i := 1; i <= 5; i++ {
		if err := os.WriteFile(filepath.Join(dir, "cred"+string(rune('0'+i))), []byte(out(i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	script := `#!/bin/sh
set -e
test "$PLUGIN_ENV" = set
case "$KUBERNETES_EXEC_INFO" in *'"kind":"ExecCredential"'*) ;; *) echo "no exec info" >&2; exit 1;; esac
n=$(cat "$(dirname "$0")/runs" 2>/dev/null || echo 0)
n=$((n+1))
echo $n > "$(dirname "$0")/runs"
cat "$(dirname "$0")/cred$n"
`
	command = filepath.Join(dir, "plugin")
	if err := os.WriteFile(command, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return command
}

func runs(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "runs"))
	if err != nil {
		return "0"
	}
	return strings.TrimSpace(string(b))
}

func tokenCredential(apiVersion, token string, expiry time.Time) string {
	st := map[string]any{"token": token}
	if !expiry.IsZero() {
		st["expirationTimestamp"] = expiry.Format(time.RFC3339)
	}
	b, _ := json.Marshal(map[string]any{"apiVersion": apiVersion, "kind": "ExecCredential", "status": st})
	return string(b)
}

// An exec plugin's token is cached; a 401 runs the plugin again and
// retries the request with the new token.
func TestExecToken(t *testing.T) {
	for _, v := range []string{execV1, execV1beta1} {
		t.Run(v, func(t *testing.T) {
			dir := t.TempDir()
			cmd := plugin(t, dir, func(n int) string { return tokenCredential(v, "tok-"+string(rune('0'+n)), time.Time{}) })
			var auths []string
			f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
				auths = append(auths, r.Header.Get("Authorization"))
				if r.Header.Get("Authorization") == "Bearer tok-1" {
					writeStatus(w, http.StatusUnauthorized, "Unauthorized", "Unauthorized")
					return
				}
				_, _ = w.Write([]byte(`{"items":[]}`))
			})
			d := f.driver(t, Connection{Exec: &ExecConfig{Command: cmd, APIVersion: v, Env: []string{"PLUGIN_ENV=set"}, ProvideClusterInfo: true}})
			for range 2 {
				if _, err := d.List(context.Background(), owner); err != nil {
					t.Fatal(err)
				}
			}
			if got := strings.Join(auths, ","); got != "Bearer tok-1,Bearer tok-2,Bearer tok-2" {
				t.Errorf("Authorization headers = %s, want tok-1 (401), then tok-2 twice", got)
			}
			if n := runs(t, dir); n != "2" {
				t.Errorf("plugin ran %s times, want 2", n)
			}
		})
	}
}

// A credential is used until its expirationTimestamp.
func TestExecExpiry(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cmd := plugin(t, dir, func(n int) string { return tokenCredential(execV1, "tok", t0.Add(time.Hour)) })
	e, err := newExecCredentials(ExecConfig{Command: cmd, APIVersion: execV1, Env: []string{"PLUGIN_ENV=set"}}, &Connection{}, "https://x")
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	e.now = func() time.Time { return now }
	for _, step := range []struct {
		after time.Duration
		runs  string
	}{{0, "1"}, {59 * time.Minute, "1"}, {2 * time.Minute, "2"}} {
		now = now.Add(step.after)
		if _, err := e.get(); err != nil {
			t.Fatal(err)
		}
		if n := runs(t, dir); n != step.runs {
			t.Errorf("at %v: plugin ran %s times, want %s", now.Sub(t0), n, step.runs)
		}
	}
}

// A plugin's client certificate is presented to the API server.
func TestExecClientCertificate(t *testing.T) {
	certPEM, keyPEM := selfSigned(t, "plugin-user")
	dir := t.TempDir()
	b, _ := json.Marshal(map[string]any{"apiVersion": execV1, "kind": "ExecCredential",
		"status": map[string]any{"clientCertificateData": string(certPEM), "clientKeyData": string(keyPEM)}})
	cmd := plugin(t, dir, func(int) string { return string(b) })
	var cn atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 {
			cn.Store(r.TLS.PeerCertificates[0].Subject.CommonName)
		}
		_, _ = w.Write([]byte(`{"items":[]}`))
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	defer srv.Close()
	d, err := NewWithConnection(Connection{Server: srv.URL, Insecure: true,
		Exec: &ExecConfig{Command: cmd, APIVersion: execV1, Env: []string{"PLUGIN_ENV=set"}}}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.List(context.Background(), owner); err != nil {
		t.Fatal(err)
	}
	if got, _ := cn.Load().(string); got != "plugin-user" {
		t.Errorf("client certificate CN = %q, want plugin-user", got)
	}
}

func TestExecErrors(t *testing.T) {
	dir := t.TempDir()
	fail := filepath.Join(dir, "fail")
	if err := os.WriteFile(fail, []byte("#!/bin/sh\necho 'token expired, run login' >&2\nexit 3\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	e, err := newExecCredentials(ExecConfig{Command: fail, APIVersion: execV1}, &Connection{}, "https://x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.get(); err == nil || !strings.Contains(err.Error(), "token expired, run login") {
		t.Errorf("get() with a failing plugin = %v, want its stderr", err)
	}
	for _, tt := range []struct{ out, want string }{
		{`nope`, "ExecCredential"},
		{`{"apiVersion":"` + execV1 + `","kind":"Other","status":{"token":"t"}}`, "kind"},
		{`{"apiVersion":"` + execV1beta1 + `","kind":"ExecCredential","status":{"token":"t"}}`, "apiVersion"},
		{`{"apiVersion":"` + execV1 + `","kind":"ExecCredential"}`, "no status"},
		{`{"apiVersion":"` + execV1 + `","kind":"ExecCredential","status":{}}`, "neither token nor"},
		{`{"apiVersion":"` + execV1 + `","kind":"ExecCredential","status":{"clientCertificateData":"x"}}`, "without status.clientKeyData"},
		{`{"apiVersion":"` + execV1 + `","kind":"ExecCredential","status":{"clientCertificateData":"x","clientKeyData":"y"}}`, "status.clientCertificateData"},
	} {
		if _, err := parseExecCredential([]byte(tt.out), execV1); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseExecCredential(%s) = %v, want an error about %q", tt.out, err, tt.want)
		}
	}
}

// selfSigned returns a PEM certificate and key for cn.
func selfSigned(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, DNSNames: []string{cn}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}
