package logstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// Followers that join before, during and after a stream of appends (with
// resends overlapping what is stored) each get exactly the written bytes
// from their offset: backlog, then live, no gap or duplicate at the seam.
func TestFollowBacklogThenLiveHasNoSeam(t *testing.T) {
	const total = 2 << 20
	s := openStore(t, "", Options{MaxBytesPerAttempt: -1})
	data := randomBytes(42, total)
	ctx := context.Background()

	// Milestones: the writer closes one after passing each of these offsets.
	// The writer then waits until the test has started followers there, so
	// they join a live log with appends still to come.
	marks := []int{0, 1, 4096, total / 3, total / 2, total - 100}
	passed := make([]chan struct{}, len(marks))
	joined := make([]chan struct{}, len(marks))
	for i := range passed {
		passed[i], joined[i] = make(chan struct{}), make(chan struct{})
	}
	writerDone := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		r := rand.New(rand.NewPCG(7, 7))
		off, next := 0, 0
		for off < total {
			n := min(1+r.IntN(3000), total-off)
			start := off
			if r.IntN(5) == 0 { // a resend overlapping what is stored
				start = max(0, off-r.IntN(2000))
			}
			ack, err := s.Append("seam", 1, uint64(start), data[start:off+n])
			if err != nil || ack != uint64(off+n) {
				writerDone <- errors.Join(err, errors.New("unexpected ack"))
				return
			}
			off += n
			for next < len(marks) && off > marks[next] {
				close(passed[next])
				select {
				case <-joined[next]:
				case <-stop: // the test failed
					writerDone <- nil
					return
				}
				next++
			}
		}
		writerDone <- s.Finish("seam", 1, total, crc(data))
	}()

	type sub struct {
		from uint64
		res  <-chan followResult
	}
	var subs []sub
	start := func(from uint64) {
		f, err := s.Follow(ctx, "seam", 1, from)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub{from, follow(f, from+uint64(len(subs)))})
	}
	start(0) // before the log exists
	for i := range marks {
		select {
		case <-passed[i]:
		case err := <-writerDone:
			t.Fatalf("writer ended early: %v", err)
		case <-time.After(deadline):
			t.Fatal("writer stalled")
		}
		start(0)
		start(uint64(marks[i] / 2))
		start(uint64(marks[i])) // at (or just behind) the live end
		close(joined[i])
	}
	select {
	case err := <-writerDone:
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
	case <-time.After(deadline):
		t.Fatal("writer stalled")
	}
	start(total / 4) // after the end: backlog only
	start(total)     // exactly at the end of a finished log
	for _, sb := range subs {
		r := await(t, sb.res)
		if r.err != io.EOF {
			t.Errorf("follower from %d ended with %v, want io.EOF", sb.from, r.err)
		}
		if !bytes.Equal(r.data, data[sb.from:]) {
			t.Errorf("follower from %d got %d bytes, want %d; first difference at %d",
				sb.from, len(r.data), total-int(sb.from), firstDiff(r.data, data[sb.from:]))
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// A follower that stops reading costs the writer nothing: appends complete,
// and when it resumes it still gets every byte.
func TestStalledFollowerDoesNotBlockAppend(t *testing.T) {
	const total = 16 << 20
	s := openStore(t, "", Options{MaxBytesPerAttempt: -1})
	data := randomBytes(9, total)
	ctx := context.Background()

	stalled, err := s.Follow(ctx, "j", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	never, err := s.Follow(ctx, "j", 1, 0) // never reads at all
	if err != nil {
		t.Fatal(err)
	}
	defer never.Close()
	mustAppend(t, s, "j", 1, 0, data[:10], 10)
	one := make([]byte, 1)
	if n, err := stalled.Read(one); n != 1 || err != nil {
		t.Fatalf("Read() = %d, %v", n, err)
	}

	done := make(chan error, 1)
	go func() {
		for off := 10; off < total; off += 4096 {
			end := min(off+4096, total)
			if _, err := s.Append("j", 1, uint64(off), data[off:end]); err != nil {
				done <- err
				return
			}
		}
		done <- s.Finish("j", 1, total, crc(data))
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
	case <-time.After(deadline):
		t.Fatal("appends blocked behind a stalled follower")
	}

	r := await(t, follow(stalled, 1))
	if got := append([]byte{one[0]}, r.data...); r.err != io.EOF || !bytes.Equal(got, data) {
		t.Errorf("resumed follower got %d bytes, %v; want %d, io.EOF", len(got), r.err, total)
	}
}

// Finish, Seal, the context and Store.Close each end a follower waiting for
// bytes.
func TestFollowersEnd(t *testing.T) {
	s := openStore(t, "", Options{})
	waits := watchWaits(s)
	ctx := context.Background()
	mustAppend(t, s, "j", 1, 0, []byte("abc"), 3)

	f1, err := s.Follow(ctx, "j", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	waiting1 := waitingFollower(t, waits, f1, "abc")
	f2, err := s.Follow(ctx, "j", 2, 0) // no log yet
	if err != nil {
		t.Fatal(err)
	}
	waiting2 := waitingFollower(t, waits, f2, "")
	cctx, cancel := context.WithCancel(ctx)
	f3, err := s.Follow(cctx, "j", 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	waiting3 := waitingFollower(t, waits, f3, "")
	f4, err := s.Follow(ctx, "j", 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	waiting4 := waitingFollower(t, waits, f4, "")

	if err := s.Finish("j", 1, 3, crc([]byte("abc"))); err != nil {
		t.Fatal(err)
	}
	if r := await(t, waiting1); r.err != io.EOF {
		t.Errorf("follower after Finish ended with %v, want io.EOF", r.err)
	}
	if err := s.Seal("j", 2); err != nil {
		t.Fatal(err)
	}
	if r := await(t, waiting2); r.err != io.EOF || len(r.data) != 0 {
		t.Errorf("follower after Seal: %q, %v; want io.EOF", r.data, r.err)
	}
	// f3 and f4 are on a finished log now, at its end: they see EOF too.
	cancel()
	if r := await(t, waiting3); r.err != io.EOF && !isCtxErr(r.err) {
		t.Errorf("follower: %v", r.err)
	}
	if r := await(t, waiting4); r.err != io.EOF {
		t.Errorf("follower: %v", r.err)
	}

	// Context and Close on a live log.
	mustAppend(t, s, "k", 1, 0, []byte("x"), 1)
	cctx, cancel = context.WithCancel(ctx)
	f5, err := s.Follow(cctx, "k", 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	waiting5 := waitingFollower(t, waits, f5, "")
	cancel()
	if r := await(t, waiting5); !errors.Is(r.err, context.Canceled) {
		t.Errorf("follower after cancel ended with %v, want context.Canceled", r.err)
	}
	f6, err := s.Follow(ctx, "k", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	waiting6 := waitingFollower(t, waits, f6, "x")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if r := await(t, waiting6); !errors.Is(r.err, ErrClosed) {
		t.Errorf("follower after Close ended with %v, want ErrClosed", r.err)
	}
	if _, err := f6.Read(make([]byte, 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Read() after the end = %v, want the same ErrClosed", err)
	}
}

// waitingFollower reads want from f, then starts a goroutine reading on and
// returns once that goroutine is blocked waiting for the log to change, so
// what the test does next happens while it waits. waits must be the
// channel fed by s.onWait (see watchWaits).
func waitingFollower(t *testing.T, waits <-chan *Follower, f *Follower, want string) <-chan followResult {
	t.Helper()
	if want != "" {
		buf := make([]byte, len(want))
		if _, err := io.ReadFull(f, buf); err != nil || string(buf) != want {
			t.Fatalf("Read() = %q, %v; want %q", buf, err, want)
		}
	}
	out := make(chan followResult, 1)
	go func() {
		var got bytes.Buffer
		buf := make([]byte, 100)
		for {
			n, err := f.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				out <- followResult{got.Bytes(), err}
				return
			}
		}
	}()
	for {
		select {
		case w := <-waits:
			if w == f {
				return out
			}
		case <-time.After(deadline):
			t.Fatal("follower never waited")
		}
	}
}

// watchWaits makes s report followers that start waiting.
func watchWaits(s *Store) <-chan *Follower {
	waits := make(chan *Follower, 1024)
	s.onWait = func(f *Follower) {
		select {
		case waits <- f:
		default:
		}
	}
	return waits
}

func TestFollowOffsetBeyondFinishedEnd(t *testing.T) {
	s := openStore(t, "", Options{})
	mustAppend(t, s, "j", 1, 0, []byte("abc"), 3)
	if err := s.Finish("j", 1, 3, crc([]byte("abc"))); err != nil {
		t.Fatal(err)
	}
	f, err := s.Follow(context.Background(), "j", 1, 9)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Read(make([]byte, 4)); !errors.Is(err, ErrOffset) {
		t.Errorf("Read() = %v, want ErrOffset", err)
	}
}
