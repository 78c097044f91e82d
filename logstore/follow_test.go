package logstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

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
func waitingFollower(t *testing.T, waits <-chan *Follower, f Cursor, want string) <-chan followResult {
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
