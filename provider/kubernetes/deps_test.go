package kubernetes_test

import (
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/internal/deptest"
)

// The driver talks to the API server over net/http with its own small
// types: client-go, apimachinery and the API types cost every hodei
// process memory at start whether or not a Kubernetes provider is
// configured. Only sigs.k8s.io/yaml (kubeconfig parsing, light) is
// allowed; tests and k8stest may use client-go.
func TestNoClientGo(t *testing.T) {
	deptest.Check(t, deptest.Module+"provider/kubernetes", func(dep string) bool {
		if dep == "sigs.k8s.io/yaml" {
			return true
		}
		return !strings.HasPrefix(dep, "k8s.io/") && !strings.HasPrefix(dep, "sigs.k8s.io/")
	})
}
