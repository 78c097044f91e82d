package migrate

import (
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/internal/deptest"
)

// TestDependencies: of Hodei, migrate imports the eventstore port only (and
// what the port itself needs); cmd wires the adapters.
func TestDependencies(t *testing.T) {
	deptest.Check(t, deptest.Module+"migrate", func(dep string) bool {
		return !strings.HasPrefix(dep, deptest.Module) || dep == deptest.Module+"eventstore"
	})
}
