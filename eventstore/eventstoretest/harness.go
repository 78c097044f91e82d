// Package eventstoretest is the conformance suite every eventstore.Store
// adapter runs: concurrency and expected versions, idempotency across restarts,
// subscriptions under load, and commit failures. An adapter's test calls Run
// with a Harness that knows how to open, reopen and break its store.
package eventstoretest

import (
	"testing"

	"github.com/hodei-jobs/hodei/eventstore"
)

// Harness tells the suite how to drive one adapter.
type Harness struct {
	// Open returns a new, empty store. The suite closes it; Open registers any
	// other cleanup (temp dirs, integrity checks) with t.Cleanup.
	Open func(t testing.TB) eventstore.Store

	// Reopen closes s and opens the same log again, as a process restart
	// would. Nil when the adapter has no durable state (memory): the restart
	// tests are then skipped.
	Reopen func(t testing.TB, s eventstore.Store) eventstore.Store

	// SetBeforeCommit installs fn to run before each commit of s; a non-nil
	// error from fn must fail that commit as a disk or database error would.
	// nil removes the hook.
	SetBeforeCommit func(s eventstore.Store, fn func() error)

	// LargeEvents is how many events the subscription-under-load test writes
	// before subscribing (default 1,000,000; 20,000 with -short).
	LargeEvents int
}
