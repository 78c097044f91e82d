package bolt

import (
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/internal/deptest"
)

// TestDependencies: an adapter imports the port and its engine, never another
// adapter or cmd.
func TestDependencies(t *testing.T) {
	deptest.Check(t, deptest.Module+"eventstore/bolt", func(dep string) bool {
		for _, banned := range []string{"eventstore/memory", "eventstore/postgres", "eventstore/eventstoretest", "cmd/", "bench"} {
			if strings.HasPrefix(dep, deptest.Module+banned) {
				return false
			}
		}
		return true
	})
}
