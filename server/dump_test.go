package server_test

import (
	"context"
	"testing"

	"github.com/hodei-jobs/hodei/eventstore"
)

// dumpOnFailure logs every event of store when the test fails.
func dumpOnFailure(t *testing.T, store eventstore.Store) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		all, _ := store.ReadAll(context.Background(), 1, 1000)
		for _, e := range all {
			t.Logf("%d %s %s %s", e.Position, e.StreamID, e.Type, e.Payload)
		}
	})
}
