package logstoretest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hodei-jobs/hodei/logstore"
)

func testAppendIdempotent(t *testing.T, h Harness) {
	s := h.open(t, 0)
	steps := []struct {
		off     uint64
		data    string
		wantAck uint64
		wantGap bool
	}{
		{0, "hello", 5, false},
		{0, "hello", 5, false},  // duplicate
		{3, "lo wor", 9, false}, // overlaps the end
		{2, "ll", 9, false},     // entirely below the end
		{12, "x", 9, true},      // gap
		{9, "", 9, false},       // empty at the end
		{10, "", 9, true},       // empty beyond the end is still a gap
		{9, "ld", 11, false},    // continues
		{0, "hello world", 11, false},
	}
	for _, st := range steps {
		ack, err := s.Append("job-1", 1, st.off, []byte(st.data))
		if ack != st.wantAck {
			t.Errorf("Append(off %d, %q) ack = %d, want %d", st.off, st.data, ack, st.wantAck)
		}
		if !st.wantGap {
			if err != nil {
				t.Errorf("Append(off %d, %q) = %v, want nil", st.off, st.data, err)
			}
			continue
		}
		var gap *logstore.GapError
		if !errors.As(err, &gap) || !errors.Is(err, logstore.ErrGap) || gap.Want != 9 || gap.Got != st.off {
			t.Errorf("Append(off %d, %q) = %v, want a *GapError{Want: 9, Got: %d}", st.off, st.data, err, st.off)
		}
	}
	if got := ReadAll(t, s, "job-1", 1); string(got) != "hello world" {
		t.Errorf("stored %q, want %q", got, "hello world")
	}
	st, err := s.Stat("job-1", 1)
	if err != nil || st.JobID != "job-1" || st.Attempt != 1 || st.Size != 11 || st.Received != 11 ||
		st.Finished || st.Truncated || st.Dropped != 0 {
		t.Errorf("Stat() = %+v, %v", st, err)
	}

	// A new log must start at 0, and a rejected first chunk creates nothing.
	_, err = s.Append("job-2", 1, 5, []byte("x"))
	if gap := (*logstore.GapError)(nil); !errors.As(err, &gap) || gap.Want != 0 || gap.Got != 5 {
		t.Errorf("Append(new log, off 5) = %v, want a gap from 0", err)
	}
	if err != nil && !strings.Contains(err.Error(), "job-2") {
		t.Errorf("error %q does not name the log", err)
	}
	if _, err := s.Stat("job-2", 1); !errors.Is(err, logstore.ErrNotFound) {
		t.Errorf("Stat(after a rejected first chunk) = %v, want ErrNotFound", err)
	}
	if as, err := s.Attempts("job-2"); err != nil || len(as) != 0 {
		t.Errorf("Attempts(after a rejected first chunk) = %v, %v; want none", as, err)
	}
}

// Random resends, overlaps and gaps against a model: the stored log is
// always the prefix of the stream up to the ack.
func testAppendMatchesModel(t *testing.T, h Harness) {
	s := h.open(t, -1)
	stream := RandomBytes(11, 20000)
	r := rand.New(rand.NewPCG(3, 4))
	stored := uint64(0)
	for range 3000 / h.Scale {
		off := uint64(r.IntN(int(min(stored+50, uint64(len(stream))))))
		end := min(off+uint64(r.IntN(300)), uint64(len(stream)))
		ack, err := s.Append("m", 1, off, stream[off:end])
		switch {
		case off > stored:
			if !errors.Is(err, logstore.ErrGap) || ack != stored {
				t.Fatalf("Append(%d..%d) with %d stored = %d, %v; want a gap", off, end, stored, ack, err)
			}
		case err != nil:
			t.Fatalf("Append(%d..%d) = %v", off, end, err)
		default:
			stored = max(stored, end)
			if ack != stored {
				t.Fatalf("Append(%d..%d) ack = %d, want %d", off, end, ack, stored)
			}
		}
	}
	if got := ReadAll(t, s, "m", 1); !bytes.Equal(got, stream[:stored]) {
		t.Errorf("stored log differs from the stream's first %d bytes", stored)
	}
	if err := s.Finish("m", 1, stored, CRC(stream[:stored])); err != nil {
		t.Errorf("Finish() = %v", err)
	}
	// An attempt that wrote nothing can finish with zero bytes.
	if err := s.Finish("m", 2, 0, 0); err != nil {
		t.Errorf("Finish(empty) = %v", err)
	}
	if st, err := s.Stat("m", 2); err != nil || !st.Finished || st.Size != 0 || !st.CRCChecked || st.Mismatch {
		t.Errorf("Stat(empty finished) = %+v, %v", st, err)
	}
}

func testBadInput(t *testing.T, h Harness) {
	s := h.open(t, 0)
	bad := []string{"", "..", ".", "../x", "../../etc/passwd", "a/b", "/abs", "a\\b", "x\x00y", ".hidden",
		"-x", "é", "a b", "a'b", "a;b", strings.Repeat("a", 129)}
	ctx := context.Background()
	for _, id := range bad {
		_, err1 := s.Append(id, 1, 0, []byte("x"))
		err2 := s.Finish(id, 1, 0, 0)
		err3 := s.Seal(id, 1)
		_, err4 := s.Stat(id, 1)
		_, err5 := s.Read(id, 1, 0, make([]byte, 1))
		_, err6 := s.Follow(ctx, id, 1, 0)
		_, err7 := s.Attempts(id)
		for i, err := range []error{err1, err2, err3, err4, err5, err6, err7} {
			var fe *logstore.FieldError
			if !errors.Is(err, logstore.ErrInvalid) || !errors.As(err, &fe) || fe.Field != "job_id" {
				t.Errorf("id %q: call %d = %v, want a job_id *FieldError", id, i+1, err)
			}
		}
	}
	for i, err := range []error{
		func() error { _, err := s.Append("ok", 0, 0, nil); return err }(),
		s.Finish("ok", 0, 0, 0),
		s.Seal("ok", 0),
	} {
		var fe *logstore.FieldError
		if !errors.As(err, &fe) || fe.Field != "attempt" {
			t.Errorf("attempt 0: call %d = %v, want an attempt *FieldError", i+1, err)
		}
	}
	if _, err := s.Append("x", 1, ^uint64(0), []byte("ab")); !errors.Is(err, logstore.ErrInvalid) {
		t.Errorf("Append(offset overflow) = %v, want ErrInvalid", err)
	}
	// Nothing was created.
	for _, id := range []string{"ok", "x"} {
		if as, err := s.Attempts(id); err != nil || len(as) != 0 {
			t.Errorf("Attempts(%s) after rejected calls = %v, %v; want none", id, as, err)
		}
	}
	for _, id := range []string{"a", strings.Repeat("a", 128), "Job.1_x-Y", "9"} {
		mustAppend(t, s, id, 1, 0, []byte("ok"), 2)
		if got := ReadAll(t, s, id, 1); string(got) != "ok" {
			t.Errorf("log of %q = %q, want %q", id, got, "ok")
		}
	}
	// Ids are case-sensitive.
	mustAppend(t, s, "Case", 1, 0, []byte("upper"), 5)
	mustAppend(t, s, "case", 1, 0, []byte("lower!"), 6)
	if got := ReadAll(t, s, "Case", 1); string(got) != "upper" {
		t.Errorf("log of Case = %q, want %q", got, "upper")
	}
}

func testFinish(t *testing.T, h Harness) {
	s := h.open(t, 0)
	data := []byte("line 1\r\nline 2\r\n")
	n := uint64(len(data))
	for _, job := range []string{"ok", "bad", "short", "long"} {
		mustAppend(t, s, job, 1, 0, data, n)
	}

	if err := s.Finish("ok", 1, n, CRC(data)); err != nil {
		t.Errorf("Finish(ok) = %v", err)
	}
	if err := s.Finish("ok", 1, n, CRC(data)); err != nil {
		t.Errorf("Finish(ok) again = %v, want nil (repeats are harmless)", err)
	}
	if err := s.Finish("ok", 1, n, CRC(data)+1); !errors.Is(err, logstore.ErrFinished) {
		t.Errorf("Finish(ok, other crc) = %v, want ErrFinished", err)
	}
	st, err := s.Stat("ok", 1)
	if err != nil || !st.Finished || st.Sealed || st.FinishedAt.IsZero() || st.AgentBytes != n ||
		st.AgentCRC != CRC(data) || !st.CRCChecked || st.Mismatch || st.Size != n || st.Received != n {
		t.Errorf("Stat(ok) = %+v, %v", st, err)
	}

	err = s.Finish("bad", 1, n, CRC(data)^1)
	var me *logstore.MismatchError
	if !errors.Is(err, logstore.ErrMismatch) || !errors.As(err, &me) ||
		*me != (logstore.MismatchError{StoredBytes: n, StoredCRC: CRC(data), AgentBytes: n, AgentCRC: CRC(data) ^ 1}) {
		t.Errorf("Finish(bad crc) = %#v, want a *MismatchError", err)
	}
	if err2 := s.Finish("bad", 1, n, CRC(data)^1); err == nil || err2 == nil || err2.Error() != err.Error() {
		t.Errorf("Finish(bad crc) again = %v, want %v", err2, err)
	}
	if st, _ := s.Stat("bad", 1); !st.Finished || !st.Mismatch || !st.CRCChecked {
		t.Errorf("Stat(bad) = %+v, want finished with a recorded mismatch", st)
	}

	// More bytes reported than stored: nothing is recorded, resend.
	err = s.Finish("short", 1, n+5, 0)
	var gap *logstore.GapError
	if !errors.As(err, &gap) || gap.Want != n || gap.Got != n+5 {
		t.Errorf("Finish(more than stored) = %v, want a *GapError", err)
	}
	if st, _ := s.Stat("short", 1); st.Finished {
		t.Errorf("Stat(short) = %+v, want not finished", st)
	}
	if err := s.Finish("short", 1, n, CRC(data)); err != nil {
		t.Errorf("Finish(short) with the right totals = %v", err)
	}
	// Fewer bytes reported than stored: a mismatch.
	if err := s.Finish("long", 1, 3, CRC(data[:3])); !errors.Is(err, logstore.ErrMismatch) {
		t.Errorf("Finish(fewer than stored) = %v, want ErrMismatch", err)
	}
}

func testAfterFinishAndSeal(t *testing.T, h Harness) {
	s := h.open(t, 0)
	mustAppend(t, s, "j", 1, 0, []byte("abcdef"), 6)
	if err := s.Finish("j", 1, 6, CRC([]byte("abcdef"))); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "j", 1, 2, []byte("cdef"), 6) // a late resend is acknowledged
	if ack, err := s.Append("j", 1, 6, []byte("g")); !errors.Is(err, logstore.ErrFinished) || ack != 6 {
		t.Errorf("Append(after finish) = %d, %v; want 6, ErrFinished", ack, err)
	}
	if err := s.Seal("j", 1); err != nil {
		t.Errorf("Seal(finished) = %v, want nil", err)
	}
	if st, _ := s.Stat("j", 1); st.Sealed {
		t.Errorf("Seal turned a finished log into a sealed one: %+v", st)
	}

	// Seal an attempt that never logged: an empty, finished log.
	if err := s.Seal("j", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Seal("j", 2); err != nil {
		t.Errorf("Seal() again = %v", err)
	}
	st, err := s.Stat("j", 2)
	if err != nil || !st.Finished || !st.Sealed || st.Size != 0 || st.FinishedAt.IsZero() {
		t.Errorf("Stat(sealed) = %+v, %v", st, err)
	}
	if err := s.Finish("j", 2, 0, 0); !errors.Is(err, logstore.ErrFinished) {
		t.Errorf("Finish(sealed) = %v, want ErrFinished", err)
	}
	if _, err := s.Append("j", 2, 0, []byte("x")); !errors.Is(err, logstore.ErrFinished) {
		t.Errorf("Append(sealed) = %v, want ErrFinished", err)
	}
	if n, err := s.Read("j", 2, 0, make([]byte, 10)); n != 0 || err != io.EOF {
		t.Errorf("Read(sealed empty) = %d, %v; want 0, io.EOF", n, err)
	}

	// Seal a log with bytes: they stay readable.
	mustAppend(t, s, "j", 3, 0, []byte("partial"), 7)
	if err := s.Seal("j", 3); err != nil {
		t.Fatal(err)
	}
	if got := ReadAll(t, s, "j", 3); string(got) != "partial" {
		t.Errorf("sealed log = %q, want %q", got, "partial")
	}
	if as, err := s.Attempts("j"); err != nil || !slices.Equal(as, []uint32{1, 2, 3}) {
		t.Errorf("Attempts() = %v, %v; want [1 2 3]", as, err)
	}
}

func testReadAndStat(t *testing.T, h Harness) {
	s := h.open(t, 0)
	buf := make([]byte, 10)
	if _, err := s.Read("none", 1, 0, buf); !errors.Is(err, logstore.ErrNotFound) {
		t.Errorf("Read(no log) = %v, want ErrNotFound", err)
	}
	if _, err := s.Stat("none", 1); !errors.Is(err, logstore.ErrNotFound) {
		t.Errorf("Stat(no log) = %v, want ErrNotFound", err)
	}
	// Several chunks, read across their boundaries.
	mustAppend(t, s, "j", 1, 0, []byte("01234"), 5)
	mustAppend(t, s, "j", 1, 5, []byte("56789"), 10)
	mustAppend(t, s, "j", 1, 10, []byte("abc"), 13)
	if n, err := s.Read("j", 1, 3, buf[:4]); n != 4 || err != nil || string(buf[:4]) != "3456" {
		t.Errorf("Read(3, 4) = %d %q, %v", n, buf[:n], err)
	}
	if n, err := s.Read("j", 1, 4, buf); n != 9 || err != nil || string(buf[:9]) != "456789abc" {
		t.Errorf("Read(4, 10) = %d %q, %v", n, buf[:n], err)
	}
	if n, err := s.Read("j", 1, 13, buf); n != 0 || err != nil {
		t.Errorf("Read(end of live log) = %d, %v; want 0, nil", n, err)
	}
	if n, err := s.Read("j", 1, 20, buf); n != 0 || err != nil {
		t.Errorf("Read(beyond end of live log) = %d, %v; want 0, nil", n, err)
	}
	if err := s.Finish("j", 1, 13, CRC([]byte("0123456789abc"))); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Read("j", 1, 10, buf); n != 3 || err != io.EOF || string(buf[:3]) != "abc" {
		t.Errorf("Read(last bytes) = %d %q, %v; want 3 \"abc\", io.EOF", n, buf[:n], err)
	}
	if n, err := s.Read("j", 1, 13, buf); n != 0 || err != io.EOF {
		t.Errorf("Read(at the end of a finished log) = %d, %v; want 0, io.EOF", n, err)
	}
	if n, err := s.Read("j", 1, 14, buf); n != 0 || !errors.Is(err, logstore.ErrOffset) {
		t.Errorf("Read(beyond finished) = %d, %v; want ErrOffset", n, err)
	}
	if n, err := s.Read("j", 1, 0, nil); n != 0 || (err != nil && err != io.EOF) {
		t.Errorf("Read(empty buffer) = %d, %v", n, err)
	}
}

func testAttemptZero(t *testing.T, h Harness) {
	s := h.open(t, 0)
	mustAppend(t, s, "j", 1, 0, []byte("first"), 5)
	mustAppend(t, s, "j", 3, 0, []byte("third"), 5)
	mustAppend(t, s, "j", 12, 0, []byte("twelfth"), 7)
	mustAppend(t, s, "j2", 40, 0, []byte("other job"), 9)
	as, err := s.Attempts("j")
	if err != nil || !slices.Equal(as, []uint32{1, 3, 12}) {
		t.Errorf("Attempts() = %v, %v; want [1 3 12]", as, err)
	}
	if as, err := s.Attempts("none"); err != nil || len(as) != 0 {
		t.Errorf("Attempts(none) = %v, %v", as, err)
	}
	st, err := s.Stat("j", 0)
	if err != nil || st.Attempt != 12 || st.Size != 7 {
		t.Errorf("Stat(attempt 0) = %+v, %v", st, err)
	}
	buf := make([]byte, 100)
	if n, err := s.Read("j", 0, 0, buf); err != nil || string(buf[:n]) != "twelfth" {
		t.Errorf("Read(attempt 0) = %q, %v; want %q", buf[:n], err, "twelfth")
	}
	c, err := s.Follow(context.Background(), "j", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Attempt() != 12 || c.Offset() != 0 {
		t.Errorf("Follow(attempt 0): Attempt() = %d, Offset() = %d; want 12, 0", c.Attempt(), c.Offset())
	}
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "twelfth"[:n] || c.Offset() != uint64(n) {
		t.Errorf("Read() = %q, %v; Offset() = %d", buf[:n], err, c.Offset())
	}
	c.Close()
	if _, err := c.Read(buf); !errors.Is(err, logstore.ErrClosed) {
		t.Errorf("Read(after Close) = %v, want ErrClosed", err)
	}
	if _, err := s.Follow(context.Background(), "none", 0, 0); !errors.Is(err, logstore.ErrNotFound) {
		t.Errorf("Follow(no attempts, 0) = %v, want ErrNotFound", err)
	}
	if _, err := s.Stat("none", 0); !errors.Is(err, logstore.ErrNotFound) {
		t.Errorf("Stat(no attempts, 0) = %v, want ErrNotFound", err)
	}
	if _, err := s.Read("none", 0, 0, buf); !errors.Is(err, logstore.ErrNotFound) {
		t.Errorf("Read(no attempts, 0) = %v, want ErrNotFound", err)
	}
}

// Appends to many logs at once from many goroutines each land in their
// own log, in order.
func testParallelLogs(t *testing.T, h Harness) {
	s := h.open(t, -1)
	const logs, rounds = 16, 40
	var wg sync.WaitGroup
	errs := make(chan error, logs)
	want := make([][]byte, logs)
	for i := range logs {
		wg.Go(func() {
			job := fmt.Sprintf("par-%d", i)
			var all []byte
			for r := range rounds {
				chunk := RandomBytes(uint64(i*rounds+r), 1+(i*31+r*17)%700)
				ack, err := s.Append(job, 1, uint64(len(all)), chunk)
				if err != nil || ack != uint64(len(all)+len(chunk)) {
					errs <- fmt.Errorf("Append(%s, round %d) = %d, %v", job, r, ack, err)
					return
				}
				all = append(all, chunk...)
			}
			want[i] = all
			if err := s.Finish(job, 1, uint64(len(all)), CRC(all)); err != nil {
				errs <- fmt.Errorf("Finish(%s) = %v", job, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	for i := range logs {
		if got := ReadAll(t, s, fmt.Sprintf("par-%d", i), 1); !bytes.Equal(got, want[i]) {
			t.Errorf("log par-%d: %d bytes differ from the %d written", i, len(got), len(want[i]))
		}
	}
}

// After Close every method returns ErrClosed, and Close again returns nil.
func testClosed(t *testing.T, h Harness) {
	s := h.Open(t, 0)
	mustAppend(t, s, "j", 1, 0, []byte("abc"), 3)
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close() again = %v, want nil", err)
	}
	_, err1 := s.Append("j", 1, 3, []byte("d"))
	err2 := s.Finish("j", 1, 3, 0)
	err3 := s.Seal("j", 1)
	_, err4 := s.Stat("j", 1)
	_, err5 := s.Read("j", 1, 0, make([]byte, 3))
	_, err6 := s.Follow(context.Background(), "j", 1, 0)
	_, err7 := s.Attempts("j")
	err8 := s.Sync()
	for i, err := range []error{err1, err2, err3, err4, err5, err6, err7, err8} {
		if !errors.Is(err, logstore.ErrClosed) {
			t.Errorf("call %d after Close = %v, want ErrClosed", i+1, err)
		}
	}
}

func testReopen(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Skip("the adapter has no durable state")
	}
	s := h.Open(t, 0)
	a, b := RandomBytes(1, 3000), RandomBytes(2, 5000)
	mustAppend(t, s, "j", 1, 0, a, 3000)
	mustAppend(t, s, "j", 2, 0, b[:1000], 1000)
	mustAppend(t, s, "k", 1, 0, a[:10], 10)
	if err := s.Finish("j", 1, 3000, CRC(a)); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish("k", 1, 10, 1); !errors.Is(err, logstore.ErrMismatch) {
		t.Fatalf("Finish(k, wrong crc) = %v, want ErrMismatch", err)
	}
	if err := s.Seal("j", 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Errorf("Sync() = %v", err)
	}
	s = h.reopen(t, s, 0)
	if got := ReadAll(t, s, "j", 1); !bytes.Equal(got, a) {
		t.Errorf("attempt 1 after reopen: %d bytes differ from the %d written", len(got), len(a))
	}
	st, err := s.Stat("j", 1)
	if err != nil || !st.Finished || st.FinishedAt.IsZero() || st.AgentCRC != CRC(a) || st.Mismatch || !st.CRCChecked {
		t.Errorf("Stat(j/1) after reopen = %+v, %v", st, err)
	}
	if st, _ := s.Stat("j", 2); st.Size != 1000 || st.Finished {
		t.Errorf("Stat(j/2) after reopen = %+v", st)
	}
	if st, _ := s.Stat("j", 3); !st.Sealed || !st.Finished {
		t.Errorf("Stat(j/3) after reopen = %+v, want sealed", st)
	}
	if err := s.Finish("k", 1, 10, 1); !errors.Is(err, logstore.ErrMismatch) {
		t.Errorf("Finish(k) after reopen = %v, want the recorded ErrMismatch", err)
	}
	if as, err := s.Attempts("j"); err != nil || !slices.Equal(as, []uint32{1, 2, 3}) {
		t.Errorf("Attempts() after reopen = %v, %v", as, err)
	}
	if _, err := s.Append("j", 2, 1500, b[1500:]); !errors.Is(err, logstore.ErrGap) {
		t.Errorf("Append(beyond the end) after reopen = %v, want ErrGap", err)
	}
	mustAppend(t, s, "j", 2, 500, b[500:], 5000) // the agent resends from an older ack
	// The CRC check after a restart covers bytes from before it.
	if err := s.Finish("j", 2, 5000, CRC(b)); err != nil {
		t.Errorf("Finish(j/2) after reopen = %v", err)
	}
	if got := ReadAll(t, s, "j", 2); !bytes.Equal(got, b) {
		t.Errorf("attempt 2 differs from what was written")
	}
}
