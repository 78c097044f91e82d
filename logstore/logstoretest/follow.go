package logstoretest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/logstore"
)

// Followers that join before, during and after a stream of appends (with
// resends overlapping what is stored) each get exactly the written bytes
// from their offset: backlog, then live, no gap or duplicate at the seam.
func testFollowSeam(t *testing.T, h Harness) {
	total := (2 << 20) / h.Scale
	s := h.open(t, -1)
	data := RandomBytes(42, total)
	ctx := context.Background()

	// Milestones: the writer pauses after passing each of these offsets
	// until the test has started followers there, so they join a live log
	// with appends still to come.
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
		writerDone <- s.Finish("seam", 1, uint64(total), CRC(data))
	}()

	type sub struct {
		from uint64
		res  <-chan followResult
	}
	var subs []sub
	start := func(from uint64) {
		subs = append(subs, sub{from, drain(follow(t, s, ctx, "seam", 1, from), from+uint64(len(subs)))})
	}
	timer := time.NewTimer(Deadline)
	defer timer.Stop()
	start(0) // before the log exists
	for i := range marks {
		select {
		case <-passed[i]:
		case err := <-writerDone:
			t.Fatalf("writer ended early: %v", err)
		case <-timer.C:
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
	case <-timer.C:
		t.Fatal("writer stalled")
	}
	start(uint64(total / 4)) // after the end: backlog only
	start(uint64(total))     // exactly at the end of a finished log
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

// A follower that stops reading costs the writer nothing: appends complete,
// and when it resumes it still gets every byte.
func testStalledFollower(t *testing.T, h Harness) {
	total := (8 << 20) / h.Scale
	s := h.open(t, -1)
	data := RandomBytes(9, total)
	ctx := context.Background()

	stalled := follow(t, s, ctx, "j", 1, 0)
	defer stalled.Close()
	never := follow(t, s, ctx, "j", 1, 0) // never reads at all
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
		done <- s.Finish("j", 1, uint64(total), CRC(data))
	}()
	timer := time.NewTimer(Deadline)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
	case <-timer.C:
		t.Fatal("appends blocked behind a stalled follower")
	}

	r := await(t, drain(stalled, 1))
	if got := append([]byte{one[0]}, r.data...); r.err != io.EOF || !bytes.Equal(got, data) {
		t.Errorf("resumed follower got %d bytes, %v; want %d, io.EOF", len(got), r.err, total)
	}
}

// Finish, Seal, the context and Close each end a follower waiting for
// bytes.
func testFollowersEnd(t *testing.T, h Harness) {
	s := h.Open(t, 0)
	defer s.Close()
	ctx := context.Background()
	mustAppend(t, s, "j", 1, 0, []byte("abc"), 3)

	f1 := readingFrom(t, follow(t, s, ctx, "j", 1, 0), "abc")
	f2 := readingFrom(t, follow(t, s, ctx, "j", 2, 0), "") // no log yet
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f3 := readingFrom(t, follow(t, s, cctx, "j", 1, 3), "")
	f4 := readingFrom(t, follow(t, s, ctx, "j", 1, 1), "bc")

	if err := s.Finish("j", 1, 3, CRC([]byte("abc"))); err != nil {
		t.Fatal(err)
	}
	if r := await(t, f1); r.err != io.EOF || len(r.data) != 0 {
		t.Errorf("follower after Finish: %q, %v; want io.EOF", r.data, r.err)
	}
	if err := s.Seal("j", 2); err != nil {
		t.Fatal(err)
	}
	if r := await(t, f2); r.err != io.EOF || len(r.data) != 0 {
		t.Errorf("follower after Seal: %q, %v; want io.EOF", r.data, r.err)
	}
	cancel()
	if r := await(t, f3); r.err != io.EOF && !isCtxErr(r.err) {
		t.Errorf("follower: %v", r.err)
	}
	if r := await(t, f4); r.err != io.EOF {
		t.Errorf("follower: %v", r.err)
	}

	// Context and Close on a live log.
	mustAppend(t, s, "k", 1, 0, []byte("x"), 1)
	cctx, cancel = context.WithCancel(ctx)
	f5 := readingFrom(t, follow(t, s, cctx, "k", 1, 1), "")
	cancel()
	if r := await(t, f5); !errors.Is(r.err, context.Canceled) {
		t.Errorf("follower after cancel ended with %v, want context.Canceled", r.err)
	}
	c6 := follow(t, s, ctx, "k", 1, 0)
	f6 := readingFrom(t, c6, "x")
	c7 := follow(t, s, ctx, "k", 1, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if r := await(t, f6); !errors.Is(r.err, logstore.ErrClosed) {
		t.Errorf("follower after Close ended with %v, want ErrClosed", r.err)
	}
	if _, err := c6.Read(make([]byte, 1)); !errors.Is(err, logstore.ErrClosed) {
		t.Errorf("Read() after the end = %v, want the same ErrClosed", err)
	}
	if _, err := c7.Read(make([]byte, 1)); !errors.Is(err, logstore.ErrClosed) {
		t.Errorf("Read() of an idle follower after Close = %v, want ErrClosed", err)
	}
	c7.Close()
}

func testFollowBeyondEnd(t *testing.T, h Harness) {
	s := h.open(t, 0)
	mustAppend(t, s, "j", 1, 0, []byte("abc"), 3)
	if err := s.Finish("j", 1, 3, CRC([]byte("abc"))); err != nil {
		t.Fatal(err)
	}
	c := follow(t, s, context.Background(), "j", 1, 9)
	defer c.Close()
	if _, err := c.Read(make([]byte, 4)); !errors.Is(err, logstore.ErrOffset) {
		t.Errorf("Read() = %v, want ErrOffset", err)
	}
	// A cursor from the middle of a finished log reads to its end.
	c2 := follow(t, s, context.Background(), "j", 1, 1)
	if r := await(t, drain(c2, 2)); string(r.data) != "bc" || r.err != io.EOF {
		t.Errorf("follower from 1 = %q, %v; want \"bc\", io.EOF", r.data, r.err)
	}
}
