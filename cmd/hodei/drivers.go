package main

import (
	"fmt"
	"log/slog"

	"github.com/hodei-jobs/hodei/provider"
	"github.com/hodei-jobs/hodei/provider/docker"
	"github.com/hodei-jobs/hodei/provider/kubernetes"
)

// newDriver builds the platform driver of one provider entry.
func newDriver(p providerEntry, log *slog.Logger) (provider.Driver, error) {
	switch p.Driver {
	case "docker":
		cfg := docker.Config{Logger: log}
		if p.Docker != nil {
			cfg.Host, cfg.Network, cfg.ExtraHosts = p.Docker.Host, p.Docker.Network, p.Docker.ExtraHosts
		}
		return docker.New(cfg)
	case "kubernetes":
		k := p.Kubernetes
		return kubernetes.New(kubernetes.Config{Kubeconfig: k.Kubeconfig, Namespace: k.Namespace,
			ServiceAccount: k.ServiceAccount, Logger: log})
	}
	return nil, fmt.Errorf("driver %q: want docker or kubernetes", p.Driver)
}
