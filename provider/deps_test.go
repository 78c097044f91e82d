package provider_test

import (
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/internal/deptest"
)

// The Manager reaches the orchestrator only through the Cluster interface
// and platforms only through Driver: it imports the domain, the views and
// the atomic file writer, never the core, the server, an event-store adapter
// or a driver. Drivers import the contract and their platform's client,
// nothing else of Hodei.
func TestDependencies(t *testing.T) {
	own := func(allowed ...string) func(string) bool {
		return func(dep string) bool {
			if !strings.HasPrefix(dep, deptest.Module) {
				return true
			}
			for _, a := range allowed {
				if dep == deptest.Module+a {
					return true
				}
			}
			return false
		}
	}
	deptest.Check(t, deptest.Module+"provider", own("domain", "projections", "eventstore", "internal/atomicfile"))
	for _, d := range []string{"provider/docker", "provider/kubernetes"} {
		deptest.Check(t, deptest.Module+d, own("provider", "domain", "projections", "eventstore", "internal/atomicfile"))
	}
}
