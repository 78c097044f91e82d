package memory_test

import (
	"testing"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/eventstoretest"
	"github.com/hodei-jobs/hodei/eventstore/memory"
)

func TestConformance(t *testing.T) {
	eventstoretest.Run(t, eventstoretest.Harness{
		Open: func(testing.TB) eventstore.Store { return memory.New(memory.Options{}) },
		SetBeforeCommit: func(s eventstore.Store, fn func() error) {
			s.(*memory.Store).SetBeforeCommit(fn)
		},
	})
}
