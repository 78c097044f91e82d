package logstore

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// deadline bounds every wait in these tests; reaching it is a failure.
const deadline = 30 * time.Second

func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if opts.SyncInterval == 0 {
		opts.SyncInterval = -1 // tests sync explicitly unless they test the timer
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

func mustAppend(t testing.TB, s *Store, job string, attempt uint32, off uint64, data []byte, wantAck uint64) {
	t.Helper()
	ack, err := s.Append(job, attempt, off, data)
	if err != nil || ack != wantAck {
		t.Fatalf("Append(%s, %d, off %d, %d bytes) = %d, %v; want %d, nil", job, attempt, off, len(data), ack, err, wantAck)
	}
}

// readAll reads a whole finished log with Read.
func readAll(t testing.TB, s *Store, job string, attempt uint32) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, 1000)
	for {
		n, err := s.Read(job, attempt, uint64(len(out)), buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Read(%s, %d, %d) = %v", job, attempt, len(out), err)
		}
		if n == 0 {
			return out // live log: all there is for now
		}
	}
}

type followResult struct {
	data []byte
	err  error // the error that ended the follower
}

// follow drains f in a goroutine with buffers of random sizes; the result
// arrives on the returned channel.
func follow(f Cursor, seed uint64) <-chan followResult {
	out := make(chan followResult, 1)
	go func() {
		defer f.Close()
		r := rand.New(rand.NewPCG(seed, 1))
		var got bytes.Buffer
		for {
			buf := make([]byte, 1+r.IntN(5000))
			n, err := f.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				out <- followResult{got.Bytes(), err}
				return
			}
		}
	}()
	return out
}

func await(t testing.TB, ch <-chan followResult) followResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(deadline):
		t.Fatalf("follower did not end within %v", deadline)
		return followResult{}
	}
}

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// fakeClock drives the periodic sync: a test sends on tick to fire it.
type fakeClock struct {
	tick chan time.Time
	mu   sync.Mutex
	now  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{tick: make(chan time.Time), now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(time.Duration) <-chan time.Time { return c.tick }

func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
