package eventstore_test

import (
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/internal/deptest"
)

// The port imports no adapter and nothing of Hodei but itself.
func TestDependencies(t *testing.T) {
	deptest.Check(t, deptest.Module+"eventstore", func(dep string) bool {
		return !strings.HasPrefix(dep, deptest.Module)
	})
}
