package logstoretest

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/hodei-jobs/hodei/logstore"
)

const markerPrefix = "[hodei: log truncated"

func testLimit(t *testing.T, h Harness) {
	const limit = 1000
	s := h.open(t, limit)
	data := RandomBytes(5, 5000)
	marker := logstore.TruncationMarker(limit)
	if want := "\r\n[hodei: log truncated at 1000 bytes; further output not stored]\r\n"; string(marker) != want {
		t.Errorf("marker = %q, want %q", marker, want)
	}

	live := drain(follow(t, s, context.Background(), "j", 1, 0), 1)
	for off := 0; off < 4000; off += 300 {
		end := min(off+300, 4000)
		mustAppend(t, s, "j", 1, uint64(off), data[off:end], uint64(end))
	}
	mustAppend(t, s, "j", 1, 100, data[100:400], 4000) // a resend after truncation
	want := append(append([]byte{}, data[:limit]...), marker...)
	if got := ReadAll(t, s, "j", 1); !bytes.Equal(got, want) {
		t.Errorf("stored %d bytes, want the first %d then the marker (%d)", len(got), limit, len(want))
	}
	st, err := s.Stat("j", 1)
	if err != nil || !st.Truncated || st.TruncatedAt != limit || st.Size != uint64(len(want)) ||
		st.Received != 4000 || st.Dropped != 3000 || st.Finished {
		t.Errorf("Stat() = %+v, %v; want truncated at %d, size %d, received 4000, dropped 3000", st, err, limit, len(want))
	}
	// Beyond the agent's end is no gap once nothing is stored any more.
	mustAppend(t, s, "j", 1, 4000, data[4000:4500], 4500)

	// Finish does not check the CRC of a truncated log, and makes Dropped
	// exact from the agent's total.
	if err := s.Finish("j", 1, 5000, CRC(data)); err != nil {
		t.Errorf("Finish(truncated log) = %v, want nil (no CRC check)", err)
	}
	if r := await(t, live); r.err != io.EOF || !bytes.Equal(r.data, want) {
		t.Errorf("live follower got %d bytes, %v; want %d, io.EOF", len(r.data), r.err, len(want))
	}
	got := ReadAll(t, s, "j", 1)
	if !bytes.Equal(got, want) || bytes.Count(got, []byte(markerPrefix)) != 1 {
		t.Errorf("after finish: %d bytes, %d markers", len(got), bytes.Count(got, []byte(markerPrefix)))
	}
	st, err = s.Stat("j", 1)
	if err != nil || !st.Finished || st.CRCChecked || st.Mismatch || st.Dropped != 4000 || st.AgentBytes != 5000 ||
		st.Received != 5000 || st.TruncatedAt != limit {
		t.Errorf("Stat(finished) = %+v, %v; want dropped 4000", st, err)
	}
	mustAppend(t, s, "j", 1, 4500, data[4500:], 5000) // a late resend
}

// A log of exactly the limit is complete, not truncated; one more byte
// truncates it.
func testLimitBoundary(t *testing.T, h Harness) {
	const limit = 64
	s := h.open(t, limit)
	data := RandomBytes(6, limit+1)
	marker := logstore.TruncationMarker(limit)
	mustAppend(t, s, "exact", 1, 0, data[:limit], limit)
	if err := s.Finish("exact", 1, limit, CRC(data[:limit])); err != nil {
		t.Errorf("Finish(exactly the limit) = %v", err)
	}
	if st, _ := s.Stat("exact", 1); st.Truncated || !st.CRCChecked || st.Size != limit {
		t.Errorf("Stat(exact) = %+v, want complete and checked", st)
	}
	mustAppend(t, s, "over", 1, 0, data[:limit], limit)
	mustAppend(t, s, "over", 1, limit, data[limit:], limit+1)
	if got, want := ReadAll(t, s, "over", 1), append(append([]byte{}, data[:limit]...), marker...); !bytes.Equal(got, want) {
		t.Errorf("stored %q, want %q", got, want)
	}
	if st, _ := s.Stat("over", 1); !st.Truncated || st.Dropped != 1 || st.Received != limit+1 {
		t.Errorf("Stat(over) = %+v, want dropped 1", st)
	}
	// One chunk straddling the limit from an empty log.
	mustAppend(t, s, "big", 1, 0, data, limit+1)
	got := ReadAll(t, s, "big", 1)
	if want := append(append([]byte{}, data[:limit]...), marker...); !bytes.Equal(got, want) {
		t.Errorf("Read(big) = %q, want %q", got, want)
	}
	// A finish with fewer bytes than received is a mismatch, recorded.
	if err := s.Finish("big", 1, limit, 0); err == nil {
		t.Errorf("Finish(big, fewer bytes than received) = nil, want ErrMismatch")
	}
	if st, _ := s.Stat("big", 1); !st.Finished || !st.Mismatch {
		t.Errorf("Stat(big) = %+v, want finished with a mismatch", st)
	}
}

// A restart, even with a higher limit, keeps a truncated log truncated: no
// second marker, and acks continue from the agent's offsets.
func testReopenTruncation(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Skip("the adapter has no durable state")
	}
	const limit = 1000
	s := h.Open(t, limit)
	data := RandomBytes(5, 5000)
	want := append(append([]byte{}, data[:limit]...), logstore.TruncationMarker(limit)...)
	for off := 0; off < 4000; off += 500 {
		mustAppend(t, s, "j", 1, uint64(off), data[off:off+500], uint64(off+500))
	}
	s = h.reopen(t, s, 1<<20)
	mustAppend(t, s, "j", 1, 4000, data[4000:], 5000)
	if err := s.Finish("j", 1, 5000, CRC(data)); err != nil {
		t.Errorf("Finish(truncated log) after reopen = %v", err)
	}
	got := ReadAll(t, s, "j", 1)
	if !bytes.Equal(got, want) || bytes.Count(got, []byte(markerPrefix)) != 1 {
		t.Errorf("after restart and finish: %d bytes, %d markers", len(got), bytes.Count(got, []byte(markerPrefix)))
	}
	st, err := s.Stat("j", 1)
	if err != nil || !st.Finished || !st.Truncated || st.Dropped != 4000 || st.AgentBytes != 5000 {
		t.Errorf("Stat(finished) after reopen = %+v, %v; want dropped 4000", st, err)
	}
}
