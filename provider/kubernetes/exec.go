package kubernetes

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// ExecConfig is a client-go credential plugin (a kubeconfig user's exec):
// a command that prints an ExecCredential with a bearer token or a client
// certificate. Its answer is cached until its expirationTimestamp, or
// until the API server answers 401.
type ExecConfig struct {
	// Command is the plugin; a name without a slash is looked up in PATH.
	Command string
	// Args are its arguments.
	Args []string
	// Env holds "NAME=value" entries added to the environment the plugin
	// inherits from the server process.
	Env []string
	// APIVersion is client.authentication.k8s.io/v1 or /v1beta1: the
	// ExecCredential version sent to and expected from the plugin.
	APIVersion string
	// ProvideClusterInfo passes the cluster's server, certificate
	// authority and TLS settings to the plugin in KUBERNETES_EXEC_INFO.
	ProvideClusterInfo bool
}

// Exec credential API versions.
const (
	execV1      = "client.authentication.k8s.io/v1"
	execV1beta1 = "client.authentication.k8s.io/v1beta1"
)

// execTimeout bounds one run of a credential plugin.
const execTimeout = time.Minute

// execCredential is what a plugin run returned.
type execCredential struct {
	token  string
	cert   *tls.Certificate
	expiry time.Time // zero: until a 401
}

// execCredentials runs a plugin and caches its answer. Runs are
// serialized: concurrent requests wait for one run.
type execCredentials struct {
	cfg  ExecConfig
	info []byte // KUBERNETES_EXEC_INFO
	now  func() time.Time
	// rotated is called when a run returned another client certificate.
	rotated func()

	mu  sync.Mutex
	cur *execCredential
}

func newExecCredentials(cfg ExecConfig, conn *Connection, server string) (*execCredentials, error) {
	if cfg.Command == "" {
		return nil, errors.New("exec: command: empty")
	}
	if cfg.APIVersion != execV1 && cfg.APIVersion != execV1beta1 {
		return nil, fmt.Errorf("exec: apiVersion %q: want %s or %s", cfg.APIVersion, execV1, execV1beta1)
	}
	for _, e := range cfg.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return nil, fmt.Errorf("exec: env %q: want NAME=value", e)
		}
	}
	type cluster struct {
		Server                   string `json:"server"`
		TLSServerName            string `json:"tls-server-name,omitempty"`
		InsecureSkipTLSVerify    bool   `json:"insecure-skip-tls-verify,omitempty"`
		CertificateAuthorityData []byte `json:"certificate-authority-data,omitempty"`
		ProxyURL                 string `json:"proxy-url,omitempty"`
	}
	spec := struct {
		Cluster     *cluster `json:"cluster,omitempty"`
		Interactive bool     `json:"interactive"`
	}{}
	if cfg.ProvideClusterInfo {
		spec.Cluster = &cluster{Server: server, TLSServerName: conn.TLSServerName, InsecureSkipTLSVerify: conn.Insecure,
			CertificateAuthorityData: conn.CAData, ProxyURL: conn.ProxyURL}
	}
	info, err := json.Marshal(map[string]any{"apiVersion": cfg.APIVersion, "kind": "ExecCredential", "spec": spec})
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	return &execCredentials{cfg: cfg, info: info, now: time.Now}, nil
}

// get returns the cached credential, or runs the plugin when there is none
// or it expired.
func (e *execCredentials) get() (*execCredential, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur != nil && (e.cur.expiry.IsZero() || e.now().Before(e.cur.expiry)) {
		return e.cur, nil
	}
	c, err := e.run()
	if err != nil {
		return nil, err
	}
	if e.cur != nil && e.cur.cert != nil && c.cert != nil && !bytes.Equal(e.cur.cert.Certificate[0], c.cert.Certificate[0]) &&
		e.rotated != nil {
		e.rotated()
	}
	e.cur = c
	return c, nil
}

// expire drops c from the cache (the API server rejected it), unless a
// newer credential already replaced it.
func (e *execCredentials) expire(c *execCredential) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur == c {
		e.cur = nil
	}
}

// clientCertificate is the TLS callback for a plugin's certificate; with
// none, the connection goes without one.
func (e *execCredentials) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	c, err := e.get()
	if err != nil {
		return nil, err
	}
	if c.cert == nil {
		return &tls.Certificate{}, nil
	}
	return c.cert, nil
}

// run runs the plugin once and parses its ExecCredential.
func (e *execCredentials) run() (*execCredential, error) {
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.cfg.Command, e.cfg.Args...)
	cmd.Env = append(append(os.Environ(), e.cfg.Env...), "KUBERNETES_EXEC_INFO="+string(e.info))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			err = fmt.Errorf("%w: %s", err, clip(msg))
		}
		return nil, fmt.Errorf("exec plugin %s: %w", e.cfg.Command, err)
	}
	c, err := parseExecCredential(stdout.Bytes(), e.cfg.APIVersion)
	if err != nil {
		return nil, fmt.Errorf("exec plugin %s: %w", e.cfg.Command, err)
	}
	return c, nil
}

// parseExecCredential parses a plugin's output of version apiVersion.
func parseExecCredential(b []byte, apiVersion string) (*execCredential, error) {
	var out struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Status     *struct {
			Token                 string    `json:"token"`
			ClientCertificateData string    `json:"clientCertificateData"`
			ClientKeyData         string    `json:"clientKeyData"`
			ExpirationTimestamp   time.Time `json:"expirationTimestamp"`
		} `json:"status"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("ExecCredential: %w", err)
	}
	switch {
	case out.Kind != "ExecCredential":
		return nil, fmt.Errorf("ExecCredential: kind %q: want ExecCredential", out.Kind)
	case out.APIVersion != apiVersion:
		return nil, fmt.Errorf("ExecCredential: apiVersion %q: want %s (the kubeconfig's)", out.APIVersion, apiVersion)
	case out.Status == nil:
		return nil, errors.New("ExecCredential: no status")
	}
	s := out.Status
	c := &execCredential{token: s.Token, expiry: s.ExpirationTimestamp}
	switch {
	case s.ClientCertificateData != "" && s.ClientKeyData != "":
		cert, err := tls.X509KeyPair([]byte(s.ClientCertificateData), []byte(s.ClientKeyData))
		if err != nil {
			return nil, fmt.Errorf("ExecCredential: status.clientCertificateData: %w", err)
		}
		c.cert = &cert
	case s.ClientCertificateData != "":
		return nil, errors.New("ExecCredential: status.clientCertificateData without status.clientKeyData")
	case s.ClientKeyData != "":
		return nil, errors.New("ExecCredential: status.clientKeyData without status.clientCertificateData")
	case s.Token == "":
		return nil, errors.New("ExecCredential: status has neither token nor clientCertificateData")
	}
	return c, nil
}
