package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/eventstore"
)

// writeLog creates a closed log of n events on 10 streams and returns its path.
func writeLog(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 5 {
		mustAppend(t, s, fmt.Sprintf("job-%d", i%10), eventstore.Any, evs(5, fmt.Sprintf("event %d", i)))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func copyFile(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy.db")
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// tamper changes a copy of the log at path with bbolt directly.
func tamper(t *testing.T, path string, fn func(tx *bbolt.Tx) error) string {
	t.Helper()
	p := copyFile(t, path)
	db, err := bbolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func put(bucket, key, value []byte) func(*bbolt.Tx) error {
	return func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Put(key, value) }
}

func pos(p uint64) []byte { return posKey(nil, p) }

// TestOpenCorrupt: a log whose meta or last events are bad does not open,
// and the error names the field or position.
func TestOpenCorrupt(t *testing.T) {
	log := writeLog(t, 100)
	var stored []byte
	var head eventstore.Envelope
	tamper(t, log, func(tx *bbolt.Tx) error {
		stored = append([]byte(nil), tx.Bucket(bucketEvents).Get(pos(100))...)
		var err error
		head, err = eventstore.UnmarshalEnvelope(stored)
		return err
	})
	otherHash := head
	otherHash.Payload = []byte("tampered")
	tampered := eventstore.MarshalEnvelope(nil, &otherHash) // keeps the old hash

	cases := []struct {
		name    string
		change  func(*bbolt.Tx) error
		corrupt bool   // errors.Is ErrCorrupt
		want    string // in the error
	}{
		{"format version", put(bucketMeta, keyFormat, []byte{0, 0, 0, 9}), false, "format version 9"},
		{"format bytes", put(bucketMeta, keyFormat, []byte{1}), true, "meta format"},
		{"head bytes", put(bucketMeta, keyHead, []byte{1, 2}), true, "meta head"},
		{"head past the log", put(bucketMeta, keyHead, headValue(101, head.Hash)), true, "position 101"},
		{"last event deleted", func(tx *bbolt.Tx) error { return tx.Bucket(bucketEvents).Delete(pos(100)) }, true, "position 100"},
		{"head hash", put(bucketMeta, keyHead, headValue(100, eventstore.Hash{1})), true, "position 100: hash does not match"},
		{"head event undecodable", put(bucketEvents, pos(100), []byte{1, 2, 3}), true, "position 100: decode"},
		{"head event content", put(bucketEvents, pos(100), tampered), true, "position 100"},
		{"indexed past head", put(bucketMeta, keyIndexed, pos(500)), true, "meta indexed"},
		{"bucket missing", func(tx *bbolt.Tx) error { return tx.DeleteBucket(bucketStreamIdx) }, true, "stream_idx"},
		{"not an event log", func(tx *bbolt.Tx) error { return tx.DeleteBucket(bucketMeta) }, false, "not a hodei event log"},
		// The events above "indexed" are replayed at open and their chain
		// checked: a change there is found at its position.
		{"tail event content", func(tx *bbolt.Tx) error {
			if err := tx.Bucket(bucketMeta).Put(keyIndexed, pos(0)); err != nil {
				return err
			}
			e, err := eventstore.UnmarshalEnvelope(tx.Bucket(bucketEvents).Get(pos(42)))
			if err != nil {
				return err
			}
			e.Payload = []byte("tampered")
			return tx.Bucket(bucketEvents).Put(pos(42), eventstore.MarshalEnvelope(nil, &e))
		}, true, "position 42: hash does not match content"},
		{"tail event missing", func(tx *bbolt.Tx) error {
			if err := tx.Bucket(bucketMeta).Put(keyIndexed, pos(0)); err != nil {
				return err
			}
			return tx.Bucket(bucketEvents).Delete(pos(42))
		}, true, "position 42: missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := tamper(t, log, c.change)
			for _, ro := range []bool{false, true} {
				s, err := Open(p, Options{ReadOnly: ro})
				if err == nil {
					s.Close()
					t.Fatalf("Open(read-only %v) of a log with a bad %s succeeded", ro, c.name)
				}
				if !strings.Contains(err.Error(), c.want) || errors.Is(err, eventstore.ErrCorrupt) != c.corrupt {
					t.Fatalf("Open(read-only %v) = %v; want an error containing %q (ErrCorrupt: %v)", ro, err, c.want, c.corrupt)
				}
			}
		})
	}
}

// TestReadCorrupt: bad stored data below the head opens (only the head and
// the tail are checked at open) and reads report it at its position.
func TestReadCorrupt(t *testing.T) {
	log := writeLog(t, 100)
	ctx := context.Background()
	t.Run("undecodable event", func(t *testing.T) {
		s, err := Open(tamper(t, log, put(bucketEvents, pos(7), []byte("garbage"))), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.ReadAll(ctx, 1, 100)
		var ce *eventstore.CorruptError
		if !errors.As(err, &ce) || ce.Position != 7 {
			t.Fatalf("ReadAll() = %v, want a *CorruptError at position 7", err)
		}
		if _, err := s.ReadStream(ctx, "job-5", 1, 100); !errors.As(err, &ce) || ce.Position != 7 {
			t.Fatalf("ReadStream() = %v, want a *CorruptError at position 7", err)
		}
		// Appends go on; a retry of the broken event's id reads it and fails.
		if _, err := s.Append(ctx, "job-5", eventstore.Any, evs(1, "more")); err != nil {
			t.Fatalf("Append() after a corrupt read = %v", err)
		}
	})
	t.Run("missing event", func(t *testing.T) {
		s, err := Open(tamper(t, log, func(tx *bbolt.Tx) error { return tx.Bucket(bucketEvents).Delete(pos(50)) }), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.ReadAll(ctx, 1, 100)
		var ce *eventstore.CorruptError
		if !errors.As(err, &ce) || ce.Position != 50 {
			t.Fatalf("ReadAll() = %v, want a *CorruptError at position 50", err)
		}
	})
	t.Run("stream index points elsewhere", func(t *testing.T) {
		s, err := Open(tamper(t, log, put(bucketStreamIdx, streamIdxKey(nil, "job-0", 2), pos(3))), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.ReadStream(ctx, "job-0", 1, 100)
		var ce *eventstore.CorruptError
		if !errors.As(err, &ce) || ce.Position != 3 || !strings.Contains(err.Error(), "indexed as job-0 version 2") {
			t.Fatalf("ReadStream() = %v, want a *CorruptError at position 3", err)
		}
		if err := checkLog(s); err == nil || !strings.Contains(err.Error(), "stream index (job-0, 2)") {
			t.Fatalf("checkLog() = %v, want the bad stream index entry named", err)
		}
	})
}

// TestOpenDamagedFile: truncated files, garbage and random byte flips give
// errors (from Open or from reads), never a panic or a hang.
func TestOpenDamagedFile(t *testing.T) {
	log := writeLog(t, 2000)
	// size is the end of the pages in use (the file is longer: bbolt
	// allocates ahead).
	var size int64
	tamper(t, log, func(tx *bbolt.Tx) error { size = tx.Size(); return nil })
	for _, n := range []int64{1, 100, 4096, 3 * 4096, size / 2, size - 4096, size - 1} {
		t.Run(fmt.Sprintf("truncated to %d", n), func(t *testing.T) {
			p := copyFile(t, log)
			if err := os.Truncate(p, n); err != nil {
				t.Fatal(err)
			}
			exercise(t, p)
		})
	}
	t.Run("garbage", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "garbage.db")
		b := make([]byte, 64<<10)
		rand.New(rand.NewSource(1)).Read(b)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if s, err := Open(p, Options{}); err == nil {
			s.Close()
			t.Fatal("Open(garbage) succeeded")
		} else if !errors.Is(err, eventstore.ErrCorrupt) {
			t.Fatalf("Open(garbage) = %v, want ErrCorrupt", err)
		}
	})
	flips := 40
	if testing.Short() {
		flips = 10
	}
	rng := rand.New(rand.NewSource(2))
	for i := 0; i < flips; i++ {
		off := rng.Int63n(size)
		t.Run(fmt.Sprintf("byte %d flipped", off), func(t *testing.T) {
			p := copyFile(t, log)
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			var b [1]byte
			if _, err := f.ReadAt(b[:], off); err != nil {
				t.Fatal(err)
			}
			b[0] ^= byte(1 + rng.Intn(255))
			if _, err := f.WriteAt(b[:], off); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			exercise(t, p)
		})
	}
}

// exercise opens a damaged file and, if it opens, reads everything and
// appends. Any outcome but a panic or a hang is acceptable; errors are
// logged.
func exercise(t *testing.T, path string) {
	t.Helper()
	for _, ro := range []bool{true, false} {
		s, err := Open(path, Options{ReadOnly: ro})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("Open() returned an empty error")
			}
			t.Logf("Open(read-only %v) = %v", ro, err)
			continue
		}
		if err := checkLog(s); err != nil {
			t.Logf("checkLog() = %v", err)
		}
		if !ro {
			_, err := s.Append(context.Background(), "job-1", eventstore.Any, evs(3, "after damage"))
			t.Logf("Append() = %v", err)
		}
		if err := s.Close(); err != nil {
			t.Logf("Close() = %v", err)
		}
	}
}

func TestStreamIdxKeys(t *testing.T) {
	for _, c := range []struct {
		stream  string
		version uint64
	}{{"job-1", 1}, {"job-10", 1<<63 + 5}, {strings.Repeat("x", 200), 7}} {
		k := streamIdxKey(nil, c.stream, c.version)
		s, v, err := parseStreamIdxKey(k)
		if err != nil || string(s) != c.stream || v != c.version {
			t.Fatalf("parseStreamIdxKey(streamIdxKey(%q, %d)) = %q, %d, %v", c.stream, c.version, s, v, err)
		}
		if !hasStreamPrefix(k, streamPrefix(nil, c.stream)) || hasStreamPrefix(k, streamPrefix(nil, c.stream+"0")) {
			t.Fatalf("hasStreamPrefix(%x) wrong", k)
		}
	}
	bad := append(streamIdxKey(nil, "job", 1), 0)
	if _, _, err := parseStreamIdxKey(bad); err == nil {
		t.Fatalf("parseStreamIdxKey(%x) accepted a malformed key", bad)
	}
	if binary.BigEndian.Uint64(posKey(nil, 9)) != 9 {
		t.Fatal("posKey is not big-endian")
	}
}
