package scheduler_test

import (
	"testing"

	"github.com/hodei-jobs/hodei/internal/deptest"
)

// The scheduler is pure and stands alone: the standard library only,
// nothing of Hodei, so the core can wire it in without cycles and the
// package can be tested and benchmarked on its own.
func TestDependencies(t *testing.T) {
	deptest.Check(t, deptest.Module+"scheduler", func(string) bool { return false })
}
