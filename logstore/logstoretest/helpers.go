package logstoretest

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/logstore"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC returns the CRC-32C (Castagnoli) of b, as agents report it in Finish.
func CRC(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// RandomBytes returns n pseudo-random bytes determined by seed.
func RandomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// mustAppend appends and fails the test unless the ack is wantAck.
func mustAppend(t testing.TB, s logstore.Logs, job string, attempt uint32, off uint64, data []byte, wantAck uint64) {
	t.Helper()
	ack, err := s.Append(job, attempt, off, data)
	if err != nil || ack != wantAck {
		t.Fatalf("Append(%s, %d, off %d, %d bytes) = %d, %v; want %d, nil", job, attempt, off, len(data), ack, err, wantAck)
	}
}

// ReadAll reads a log with Read from offset 0 to its end (a finished log's
// io.EOF, or the current end of a live one).
func ReadAll(t testing.TB, s logstore.Logs, job string, attempt uint32) []byte {
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
			return out
		}
	}
}

type followResult struct {
	data []byte
	err  error // the error that ended the cursor
}

// drain reads c to its end in a goroutine with buffers of random sizes and
// closes it; the result arrives on the returned channel.
func drain(c logstore.Cursor, seed uint64) <-chan followResult {
	out := make(chan followResult, 1)
	go func() {
		defer c.Close()
		r := rand.New(rand.NewPCG(seed, 1))
		var got bytes.Buffer
		for {
			buf := make([]byte, 1+r.IntN(5000))
			n, err := c.Read(buf)
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
	timer := time.NewTimer(Deadline)
	defer timer.Stop()
	select {
	case r := <-ch:
		return r
	case <-timer.C:
		t.Fatalf("follower did not end within %v", Deadline)
		return followResult{}
	}
}

func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// follow opens a cursor and fails the test on error.
func follow(t testing.TB, s logstore.Logs, ctx context.Context, job string, attempt uint32, from uint64) logstore.Cursor {
	t.Helper()
	c, err := s.Follow(ctx, job, attempt, from)
	if err != nil {
		t.Fatalf("Follow(%s, %d, %d) = %v", job, attempt, from, err)
	}
	return c
}

// readingFrom reads want from c, then reads on in a goroutine until c ends.
func readingFrom(t testing.TB, c logstore.Cursor, want string) <-chan followResult {
	t.Helper()
	if want != "" {
		buf := make([]byte, len(want))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
			t.Fatalf("Read() = %q, %v; want %q", buf, err, want)
		}
	}
	return drain(c, 1)
}
