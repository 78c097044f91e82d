package logstore

import (
	"bytes"
	"context"
	"io"
	"testing"
)

func TestLimitTruncatesOnceAndAcksKeepAdvancing(t *testing.T) {
	const limit = 1000
	dir := t.TempDir()
	s := openStore(t, dir, Options{MaxBytesPerAttempt: limit})
	data := randomBytes(5, 5000)
	marker := markerLine(limit)
	if want := "\r\n[hodei: log truncated at 1000 bytes; further output not stored]\r\n"; string(marker) != want {
		t.Errorf("marker = %q, want %q", marker, want)
	}

	f, err := s.Follow(context.Background(), "j", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	live := follow(f, 1)
	for off := 0; off < 4000; off += 300 {
		end := min(off+300, 4000)
		mustAppend(t, s, "j", 1, uint64(off), data[off:end], uint64(end))
	}
	mustAppend(t, s, "j", 1, 100, data[100:400], 4000) // a resend after truncation
	want := append(append([]byte{}, data[:limit]...), marker...)
	if got := readAll(t, s, "j", 1); !bytes.Equal(got, want) {
		t.Errorf("stored %d bytes, want the first %d then the marker (%d)", len(got), limit, len(want))
	}
	st, err := s.Stat("j", 1)
	if err != nil || !st.Truncated || st.TruncatedAt != limit || st.Size != uint64(len(want)) ||
		st.Received != 4000 || st.Dropped != 3000 {
		t.Errorf("Stat() = %+v, %v", st, err)
	}

	// A restart, even with a higher limit, keeps the log truncated: no
	// second marker, and acks continue from the agent's offsets.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if r := await(t, live); !bytes.Equal(r.data, want) {
		t.Errorf("live follower got %d bytes, want %d", len(r.data), len(want))
	}
	s = openStore(t, dir, Options{MaxBytesPerAttempt: 1 << 20})
	mustAppend(t, s, "j", 1, 4000, data[4000:], 5000)
	if err := s.Finish("j", 1, 5000, crc(data)); err != nil {
		t.Errorf("Finish(truncated log) = %v, want nil (no CRC check)", err)
	}
	got := readAll(t, s, "j", 1)
	if !bytes.Equal(got, want) || bytes.Count(got, []byte("[hodei: log truncated")) != 1 {
		t.Errorf("after restart and finish: %d bytes, %d markers", len(got), bytes.Count(got, []byte("[hodei: log truncated")))
	}
	st, err = s.Stat("j", 1)
	if err != nil || !st.Finished || st.CRCChecked || st.Mismatch || st.Dropped != 4000 || st.AgentBytes != 5000 {
		t.Errorf("Stat(finished) = %+v, %v; want dropped 4000", st, err)
	}
	mustAppend(t, s, "j", 1, 4500, data[4500:], 5000)
}

// A log of exactly the limit is complete, not truncated; one more byte
// truncates it.
func TestLimitBoundary(t *testing.T) {
	const limit = 64
	s := openStore(t, "", Options{MaxBytesPerAttempt: limit})
	data := randomBytes(6, limit+1)
	mustAppend(t, s, "exact", 1, 0, data[:limit], limit)
	if err := s.Finish("exact", 1, limit, crc(data[:limit])); err != nil {
		t.Errorf("Finish(exactly the limit) = %v", err)
	}
	if st, _ := s.Stat("exact", 1); st.Truncated || !st.CRCChecked {
		t.Errorf("Stat(exact) = %+v, want complete and checked", st)
	}
	mustAppend(t, s, "over", 1, 0, data[:limit], limit)
	mustAppend(t, s, "over", 1, limit, data[limit:], limit+1)
	if got, want := readAll(t, s, "over", 1), append(append([]byte{}, data[:limit]...), markerLine(limit)...); !bytes.Equal(got, want) {
		t.Errorf("stored %q, want %q", got, want)
	}
	if st, _ := s.Stat("over", 1); !st.Truncated || st.Dropped != 1 {
		t.Errorf("Stat(over) = %+v, want dropped 1", st)
	}
	// One chunk straddling the limit from an empty log.
	mustAppend(t, s, "big", 1, 0, data, limit+1)
	n, err := s.Read("big", 1, 0, make([]byte, 1000))
	if err != nil && err != io.EOF || n != limit+len(markerLine(limit)) {
		t.Errorf("Read(big) = %d, %v", n, err)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{64 << 20: "64 MiB", 1 << 30: "1 GiB", 1536: "1536 bytes", 4096: "4 KiB", 1: "1 byte"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
