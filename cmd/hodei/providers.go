package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/hodei-jobs/hodei/provider"
)

// providersFile is the --providers file: the providers that start agents
// on demand.
//
//	{"providers": [{
//	  "name": "docker", "driver": "docker", "image": "hodei-agent:dev",
//	  "labels": {"pool": "docker"}, "slots": 1, "cpu_millis": 1000,
//	  "memory_bytes": 536870912, "max": 4, "idle_timeout": "1m",
//	  "ephemeral": false, "start_timeout": "2m",
//	  "server_address": "172.17.0.1:7070",
//	  "docker": {"network": "bridge"}
//	}]}
type providersFile struct {
	Providers []providerEntry `json:"providers"`
}

type providerEntry struct {
	Name           string            `json:"name"`
	Driver         string            `json:"driver"`
	Image          string            `json:"image"`
	Labels         map[string]string `json:"labels"`
	PlatformLabels map[string]string `json:"platform_labels"`
	Slots          int               `json:"slots"`
	CPUMillis      uint64            `json:"cpu_millis"`
	MemoryBytes    uint64            `json:"memory_bytes"`
	Max            int               `json:"max"`
	IdleTimeout    duration          `json:"idle_timeout"`
	Ephemeral      bool              `json:"ephemeral"`
	StartTimeout   duration          `json:"start_timeout"`
	LostTimeout    duration          `json:"lost_timeout"`
	ServerAddress  string            `json:"server_address"`
	TLSServerName  string            `json:"tls_server_name"`
	Env            map[string]string `json:"env"`
	BackoffMin     duration          `json:"backoff_min"`
	BackoffMax     duration          `json:"backoff_max"`

	Docker     *dockerEntry     `json:"docker"`
	Kubernetes *kubernetesEntry `json:"kubernetes"`
}

type dockerEntry struct {
	Host       string   `json:"host"`
	Network    string   `json:"network"`
	ExtraHosts []string `json:"extra_hosts"`
}

type kubernetesEntry struct {
	Kubeconfig     string `json:"kubeconfig"`
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"service_account"`
}

// duration is a time.Duration written as "90s" in JSON.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"90s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("%q is negative", s)
	}
	*d = duration(v)
	return nil
}

// loadProviders reads and checks a --providers file. Every error names the
// file and the provider or field at fault.
func loadProviders(path string) ([]providerEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--providers: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f providersFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("--providers %s: %w", path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("--providers %s: trailing data after the JSON object", path)
	}
	if len(f.Providers) == 0 {
		return nil, fmt.Errorf("--providers %s: no providers listed", path)
	}
	seen := map[string]bool{}
	for i, p := range f.Providers {
		if err := p.config(false).Validate(); err != nil {
			return nil, fmt.Errorf("--providers %s: providers[%d]: %w", path, i, err)
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("--providers %s: providers[%d]: name %q is used twice", path, i, p.Name)
		}
		seen[p.Name] = true
		switch p.Driver {
		case "docker":
			if p.Kubernetes != nil {
				return nil, fmt.Errorf("--providers %s: provider %q: a docker provider takes no \"kubernetes\" section", path, p.Name)
			}
		case "kubernetes":
			if p.Docker != nil {
				return nil, fmt.Errorf("--providers %s: provider %q: a kubernetes provider takes no \"docker\" section", path, p.Name)
			}
			if p.Kubernetes == nil || p.Kubernetes.Namespace == "" {
				return nil, fmt.Errorf("--providers %s: provider %q: kubernetes.namespace is required", path, p.Name)
			}
		default:
			return nil, fmt.Errorf("--providers %s: provider %q: driver %q: want docker or kubernetes", path, p.Name, p.Driver)
		}
	}
	return f.Providers, nil
}

func (p providerEntry) config(plaintext bool) provider.Config {
	return provider.Config{Name: p.Name, Image: p.Image, Labels: p.Labels, PlatformLabels: p.PlatformLabels,
		Slots: p.Slots, CPUMillis: p.CPUMillis, MemoryBytes: p.MemoryBytes, Max: p.Max,
		IdleTimeout: time.Duration(p.IdleTimeout), Ephemeral: p.Ephemeral, StartTimeout: time.Duration(p.StartTimeout),
		LostTimeout:   time.Duration(p.LostTimeout),
		ServerAddress: p.ServerAddress, TLSServerName: p.TLSServerName, Plaintext: plaintext, Env: p.Env,
		BackoffMin: time.Duration(p.BackoffMin), BackoffMax: time.Duration(p.BackoffMax)}
}

// startProviders builds one manager per provider; run them with Run.
func startProviders(entries []providerEntry, dataDir, staticToken string, cluster provider.Cluster, sec serverSecurity, log *slog.Logger) ([]*provider.Manager, error) {
	owner, err := provider.LoadOwner(dataDir)
	if err != nil {
		return nil, err
	}
	var cred func(context.Context, string) (string, error)
	switch {
	case staticToken != "":
		cred = func(context.Context, string) (string, error) { return staticToken, nil }
	case sec.tokens != nil:
		if sec.caFingerprint == "" {
			return nil, errors.New("--providers: agents join with tokens that pin the CA, but the server runs --insecure-plaintext; give --join-token or run with TLS")
		}
		cred = func(_ context.Context, id string) (string, error) {
			// One use, and only for as long as the instance may take to
			// connect.
			tok, _, err := sec.tokens.CreateJoin(sec.caFingerprint, "provider instance "+id, 30*time.Minute, 1)
			if err != nil {
				return "", err
			}
			return tok.String(), nil
		}
	}
	out := make([]*provider.Manager, 0, len(entries))
	for _, p := range entries {
		d, err := newDriver(p, log)
		if err != nil {
			return nil, fmt.Errorf("provider %q: %w", p.Name, err)
		}
		cfg := p.config(sec.tls == nil)
		m, err := provider.NewManager(cfg, provider.Options{Owner: owner, Cluster: cluster, Driver: d, Credential: cred, Logger: log})
		if err != nil {
			return nil, err
		}
		log.Info("provider ready", "provider", p.Name, "driver", p.Driver, "image", p.Image, "max", p.Max, "owner", owner)
		out = append(out, m)
	}
	return out, nil
}
