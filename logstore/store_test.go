package logstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/internal/deptest"
)

// The log store depends on nothing of Hodei's (and nothing outside the
// standard library), so any layer may use it.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	deptest.Check(t, deptest.Module+"logstore", func(string) bool { return false })
}

// The contract every adapter shares (offsets, acks, Finish, Seal, limits,
// reads, followers) is tested by logstoretest in conformance_test.go; the
// tests here cover what is particular to files.

// A rejected first chunk creates no directory.
func TestGapCreatesNothing(t *testing.T) {
	s := openStore(t, "", Options{})
	_, err := s.Append("job-2", 1, 5, []byte("x"))
	if gap := (*GapError)(nil); !errors.As(err, &gap) || gap.Want != 0 {
		t.Errorf("Append(new log, off 5) = %v, want a gap from 0", err)
	}
	if err != nil && !strings.Contains(err.Error(), "append job job-2 attempt 1") {
		t.Errorf("error %q does not name the op and log", err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "job-2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a rejected first chunk created the job directory (stat: %v)", err)
	}
}

func TestBadInputIsRejected(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, filepath.Join(root, "logs"), Options{})
	bad := []string{"", "..", ".", "../x", "../../etc/passwd", "a/b", "/abs", "a\\b", "x\x00y", ".hidden",
		"-x", "é", "a b", strings.Repeat("a", 129)}
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
			var fe *FieldError
			if !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Field != "job_id" {
				t.Errorf("id %q: call %d = %v, want a job_id *FieldError", id, i+1, err)
			}
		}
	}
	for i, err := range []error{
		func() error { _, err := s.Append("ok", 0, 0, nil); return err }(),
		s.Finish("ok", 0, 0, 0),
		s.Seal("ok", 0),
	} {
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "attempt" {
			t.Errorf("attempt 0: call %d = %v, want an attempt *FieldError", i+1, err)
		}
	}
	if _, err := s.Append("x", 1, ^uint64(0), []byte("ab")); !errors.Is(err, ErrInvalid) {
		t.Errorf("Append(offset overflow) = %v, want ErrInvalid", err)
	}
	// Nothing was created anywhere.
	for _, dir := range []string{root, s.dir} {
		entries, _ := os.ReadDir(dir)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if want := map[string][]string{root: {"logs"}, s.dir: nil}[dir]; !slices.Equal(names, want) {
			t.Errorf("%s holds %q, want %q", dir, names, want)
		}
	}
	for _, id := range []string{"a", strings.Repeat("a", 128), "Job.1_x-Y", "9"} {
		mustAppend(t, s, id, 1, 0, []byte("ok"), 2)
	}
	if _, err := Open("", Options{}); !errors.Is(err, ErrInvalid) {
		t.Errorf(`Open("") = %v, want ErrInvalid`, err)
	}
}

// The store accepts exactly the ids the domain accepts.
func TestJobIDsMatchDomain(t *testing.T) {
	ids := []string{"", "a", "A9", "a.b", ".a", "a..", "_", "a_", "-", "a-", "a/b", "a\x00",
		strings.Repeat("z", 128), strings.Repeat("z", 129), "ü", "a b", "a\n"}
	for _, id := range ids {
		if got, want := checkJobID(id) == nil, domain.ValidateID(id) == nil; got != want {
			t.Errorf("checkJobID(%q) ok = %t, domain.ValidateID ok = %t", id, got, want)
		}
	}
}

func FuzzJobID(f *testing.F) {
	for _, s := range []string{"", "a", "../x", "a.b-c_d", strings.Repeat("a", 129)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := checkJobID(id)
		if got, want := err == nil, domain.ValidateID(id) == nil; got != want {
			t.Fatalf("checkJobID(%q) ok = %t, domain.ValidateID ok = %t", id, got, want)
		}
		if err == nil && (filepath.Clean(id) != id || strings.ContainsAny(id, `/\`) || id == "." || id == "..") {
			t.Fatalf("checkJobID(%q) accepted a path-like id", id)
		}
	})
}

func TestAttemptZeroIsTheLatest(t *testing.T) {
	s := openStore(t, "", Options{})
	mustAppend(t, s, "j", 1, 0, []byte("first"), 5)
	mustAppend(t, s, "j", 3, 0, []byte("third"), 5)
	mustAppend(t, s, "j", 12, 0, []byte("twelfth"), 7)
	if err := os.WriteFile(filepath.Join(s.dir, "j", "007.log"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
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
	f, err := s.Follow(context.Background(), "j", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if f.Attempt() != 12 {
		t.Errorf("Follow(attempt 0).Attempt() = %d, want 12", f.Attempt())
	}
	f.Close()
	if _, err := s.Follow(context.Background(), "none", 0, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Follow(no attempts, 0) = %v, want ErrNotFound", err)
	}
}

// A crash can leave the last write torn: the log is then just shorter, and
// the agent resends from the stored end.
func TestTornWriteIsAShorterLog(t *testing.T) {
	dir := t.TempDir()
	data := randomBytes(3, 100)
	if err := os.MkdirAll(filepath.Join(dir, "j"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "j", "1.log"), data[:37], 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir, Options{})
	if st, err := s.Stat("j", 1); err != nil || st.Size != 37 {
		t.Fatalf("Stat() = %+v, %v; want size 37", st, err)
	}
	if _, err := s.Append("j", 1, 60, data[60:]); !errors.Is(err, ErrGap) {
		t.Errorf("Append(from the agent's ack 60) = %v, want ErrGap from 37", err)
	}
	mustAppend(t, s, "j", 1, 30, data[30:], 100)
	if err := s.Finish("j", 1, 100, crc(data)); err != nil {
		t.Errorf("Finish() = %v", err)
	}
}

func TestPeriodicSync(t *testing.T) {
	clock := newFakeClock()
	synced := make(chan struct{})
	s, err := Open(t.TempDir(), Options{Clock: clock, SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	s.afterSync = func() { synced <- struct{}{} }
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	}()
	mustAppend(t, s, "j", 1, 0, []byte("x"), 1)
	if n := dirtyCount(s); n != 1 {
		t.Fatalf("%d dirty logs after an append, want 1", n)
	}
	tick(t, clock, synced)
	if n := dirtyCount(s); n != 0 {
		t.Errorf("%d dirty logs after the periodic sync, want 0", n)
	}
	l := s.logs[key{"j", 1}]
	l.mu.Lock()
	dirty, newFile := l.dirty, l.newFile
	l.mu.Unlock()
	if dirty || newFile {
		t.Errorf("after the periodic sync: dirty %t, newFile %t", dirty, newFile)
	}
	mustAppend(t, s, "j", 1, 1, []byte("y"), 2)
	tick(t, clock, synced)
	if n := dirtyCount(s); n != 0 {
		t.Errorf("%d dirty logs after the second sync, want 0", n)
	}
}

func tick(t *testing.T, clock *fakeClock, synced <-chan struct{}) {
	t.Helper()
	select {
	case clock.tick <- clock.Now():
	case <-time.After(deadline):
		t.Fatal("the sync loop did not wait on the clock")
	}
	select {
	case <-synced:
	case <-time.After(deadline):
		t.Fatal("the periodic sync did not run")
	}
}

func dirtyCount(s *Store) int {
	s.dirtyMu.Lock()
	defer s.dirtyMu.Unlock()
	return len(s.dirty)
}

// Many logs through few file handles: handles are closed least recently
// used first and reopened on demand, without losing or reordering bytes.
func TestManyLogsFewOpenFiles(t *testing.T) {
	const logs, rounds, maxOpen = 20, 30, 3
	s := openStore(t, "", Options{MaxOpenFiles: maxOpen})
	want := make([][]byte, logs)
	ctx := context.Background()
	results := make([]<-chan followResult, 0, logs)
	for i := range logs {
		if i%4 == 0 {
			f, err := s.Follow(ctx, "j", uint32(i+1), 0)
			if err != nil {
				t.Fatal(err)
			}
			results = append(results, follow(f, uint64(i)))
		}
	}
	for r := range rounds {
		for i := range logs {
			chunk := randomBytes(uint64(r*logs+i), 1+r*7%200)
			mustAppend(t, s, "j", uint32(i+1), uint64(len(want[i])), chunk, uint64(len(want[i])+len(chunk)))
			want[i] = append(want[i], chunk...)
			// Each follower may hold one more until its read ends.
			if open := openCount(s); open > maxOpen+len(results) {
				t.Fatalf("%d files open, want at most %d", open, maxOpen+len(results))
			}
		}
	}
	for i := range logs {
		if err := s.Finish("j", uint32(i+1), uint64(len(want[i])), crc(want[i])); err != nil {
			t.Errorf("Finish(%d) = %v", i+1, err)
		}
		if got := readAll(t, s, "j", uint32(i+1)); !bytes.Equal(got, want[i]) {
			t.Errorf("log %d differs from what was written", i+1)
		}
	}
	for k, ch := range results {
		r := await(t, ch)
		if i := k * 4; r.err != io.EOF || !bytes.Equal(r.data, want[i]) {
			t.Errorf("follower of log %d: %d bytes, %v; want %d bytes, io.EOF", i+1, len(r.data), r.err, len(want[i]))
		}
	}
	if open := openCount(s); open > maxOpen {
		t.Errorf("%d files open at the end, want at most %d", open, maxOpen)
	}
}

func openCount(s *Store) int {
	s.fdMu.Lock()
	defer s.fdMu.Unlock()
	return s.open.Len()
}

// Entries for logs that are idle (closed, synced, unreferenced) leave
// memory: lookups of unknown ids and finished logs do not accumulate.
func TestIdleLogsLeaveMemory(t *testing.T) {
	s := openStore(t, "", Options{MaxOpenFiles: 1})
	for i := range 50 {
		_, _ = s.Stat("nobody", uint32(i+1))
		f, err := s.Follow(context.Background(), "nobody", uint32(i+1), 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	for i := range 5 {
		mustAppend(t, s, "j", uint32(i+1), 0, []byte("x"), 1)
		if err := s.Finish("j", uint32(i+1), 1, crc([]byte("x"))); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.RLock()
	n := len(s.logs)
	s.mu.RUnlock()
	if n > 1 {
		t.Errorf("%d log entries in memory, want at most 1 (the one open file)", n)
	}
}

// Random resends, overlaps and gaps against a model: the stored log is
// always the prefix of the stream up to the ack.
func TestAppendMatchesModel(t *testing.T) {
	s := openStore(t, "", Options{MaxBytesPerAttempt: -1, MaxOpenFiles: 1})
	stream := randomBytes(11, 20000)
	r := rand.New(rand.NewPCG(3, 4))
	stored := uint64(0)
	for range 3000 {
		off := uint64(r.IntN(int(min(stored+50, uint64(len(stream))))))
		end := min(off+uint64(r.IntN(300)), uint64(len(stream)))
		ack, err := s.Append("m", 1, off, stream[off:end])
		switch {
		case off > stored:
			if !errors.Is(err, ErrGap) || ack != stored {
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
		if r.IntN(50) == 0 { // touch another log so the handle is evicted
			mustAppend(t, s, "other", 1, 0, []byte("x"), 1)
		}
	}
	if got := readAll(t, s, "m", 1); !bytes.Equal(got, stream[:stored]) {
		t.Errorf("stored log differs from the stream's first %d bytes", stored)
	}
	if err := s.Finish("m", 1, stored, crc(stream[:stored])); err != nil {
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
