package docker_test

import (
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/internal/deptest"
)

// The driver speaks the Engine API over net/http itself: hodei links it
// into every server process, and the Docker SDK (its API types, their OCI
// and containerd dependencies, its OpenTelemetry transport) cost each one
// megabytes of RSS, Docker provider or not.
func TestNoDockerSDK(t *testing.T) {
	deptest.Check(t, deptest.Module+"provider/docker", func(dep string) bool {
		for _, banned := range []string{"github.com/docker/", "github.com/moby/", "github.com/containerd/",
			"github.com/opencontainers/", "go.opentelemetry.io/"} {
			if strings.HasPrefix(dep, banned) {
				return false
			}
		}
		return true
	})
}
