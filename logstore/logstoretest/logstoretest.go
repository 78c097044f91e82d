// Package logstoretest is the conformance suite every logstore.Logs adapter
// runs: idempotent appends by offset and acks, Finish's length and CRC
// check, Seal, the size limit and its truncation marker, reads, attempts,
// followers (backlog then live tail with no seam, endings, a stalled
// follower that never blocks the writer), bad input, Close, and restarts.
//
// An adapter's test calls Run with a Harness that opens its store:
//
//	func TestConformance(t *testing.T) {
//		logstoretest.Run(t, logstoretest.Harness{
//			Open: func(t testing.TB, limit int64) logstore.Logs { ... },
//			Reopen: ...,
//		})
//	}
//
// The suite depends only on logstore and the standard library. It waits on
// results, never on time; every wait is bounded by Deadline.
package logstoretest

import (
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/logstore"
)

// Deadline bounds every wait in the suite; reaching it is a failure.
const Deadline = 60 * time.Second

// Harness tells the suite how to drive one adapter.
type Harness struct {
	// Open returns a new, empty store whose per-attempt size limit is
	// maxBytesPerAttempt, with logstore.Options.MaxBytesPerAttempt's meaning
	// (0: the default, negative: none). The suite closes the store (maybe
	// twice); Open registers any other cleanup with t.Cleanup.
	Open func(t testing.TB, maxBytesPerAttempt int64) logstore.Logs

	// Reopen closes s and opens the same storage again with the given
	// limit, as a server restart would. Nil skips the restart tests.
	Reopen func(t testing.TB, s logstore.Logs, maxBytesPerAttempt int64) logstore.Logs

	// Scale divides the byte counts of the volume tests (seam, stalled
	// follower, model) for slow adapters; 0 or 1 runs them in full.
	Scale int
}

// Run runs the whole conformance suite against the adapter h drives.
func Run(t *testing.T, h Harness) {
	if h.Open == nil {
		t.Fatal("logstoretest: Harness.Open is nil")
	}
	if h.Scale < 1 {
		h.Scale = 1
	}
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"AppendIsIdempotentByOffset", testAppendIdempotent},
		{"AppendMatchesModel", testAppendMatchesModel},
		{"BadInputIsRejected", testBadInput},
		{"FinishChecksLengthAndCRC", testFinish},
		{"AppendAfterFinishAndSeal", testAfterFinishAndSeal},
		{"ReadAndStat", testReadAndStat},
		{"AttemptZeroIsTheLatest", testAttemptZero},
		{"LimitTruncatesOnceAndAcksKeepAdvancing", testLimit},
		{"LimitBoundary", testLimitBoundary},
		{"FollowBacklogThenLiveHasNoSeam", testFollowSeam},
		{"StalledFollowerDoesNotBlockAppend", testStalledFollower},
		{"FollowersEnd", testFollowersEnd},
		{"FollowOffsetBeyondFinishedEnd", testFollowBeyondEnd},
		{"ParallelLogs", testParallelLogs},
		{"Closed", testClosed},
		{"ReopenKeepsData", testReopen},
		{"ReopenKeepsTruncation", testReopenTruncation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

// open opens a store and closes it when the test ends.
func (h Harness) open(t *testing.T, limit int64) logstore.Logs {
	t.Helper()
	s := h.Open(t, limit)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

// reopen restarts s; the returned store is closed when the test ends.
func (h Harness) reopen(t *testing.T, s logstore.Logs, limit int64) logstore.Logs {
	t.Helper()
	s = h.Reopen(t, s, limit)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}
