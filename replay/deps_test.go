package replay_test

import (
	"testing"

	"github.com/hodei-jobs/hodei/internal/deptest"
)

func TestDependencies(t *testing.T) {
	deptest.Check(t, deptest.Module+"replay", deptest.NoAdapters)
}
