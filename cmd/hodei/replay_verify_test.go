package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/bolt"
	"github.com/hodei-jobs/hodei/eventstore/eventstoretest"
)

// writeLog makes a closed bbolt log of n events over 5 streams in dir.
func writeLog(t *testing.T, dir string, n int) {
	t.Helper()
	s, err := bolt.Open(filepath.Join(dir, eventsFile), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		ev := eventstoretest.Event("test.happened", 40)
		if _, err := s.Append(context.Background(), fmt.Sprintf("job-%d", i%5), eventstore.Any, []eventstore.EventData{ev}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func copyLog(t *testing.T, from string) string {
	t.Helper()
	dir := t.TempDir()
	in, err := os.Open(filepath.Join(from, eventsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(filepath.Join(dir, eventsFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func key(pos uint64) []byte { return binary.BigEndian.AppendUint64(nil, pos) }

// tamper edits the events bucket of a copied log directly, as an attacker
// with the file would.
func tamper(t *testing.T, dir string, fn func(events *bbolt.Bucket) error) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(dir, eventsFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error { return fn(tx.Bucket([]byte("events"))) }); err != nil {
		t.Fatal(err)
	}
}

func runVerify(t *testing.T, dir string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"replay", "verify", "--data", dir}, nil, &stdout, &stderr)
	return code, stdout.String() + stderr.String()
}

func TestReplayVerifyFindsTampering(t *testing.T) {
	clean := t.TempDir()
	writeLog(t, clean, 60)
	if code, out := runVerify(t, clean); code != exitOK || !strings.Contains(out, "ok: 60 events in 5 streams") {
		t.Fatalf("verify of an intact log = exit %d:\n%s", code, out)
	}
	cases := []struct {
		name   string
		edit   func(*bbolt.Bucket) error
		wantAt string
	}{
		{"flip a payload byte", func(b *bbolt.Bucket) error {
			v := append([]byte(nil), b.Get(key(17))...)
			v[len(v)-64-5] ^= 0x01 // a payload byte: the payload ends just before the two hashes
			return b.Put(key(17), v)
		}, "position 17"},
		{"delete an event", func(b *bbolt.Bucket) error { return b.Delete(key(23)) }, "position 23"},
		{"swap two events", func(b *bbolt.Bucket) error {
			v30, v41 := append([]byte(nil), b.Get(key(30))...), append([]byte(nil), b.Get(key(41))...)
			if err := b.Put(key(30), v41); err != nil {
				return err
			}
			return b.Put(key(41), v30)
		}, "position 30"},
		{"change a stream version", func(b *bbolt.Bucket) error {
			e, err := eventstore.UnmarshalEnvelope(b.Get(key(44)))
			if err != nil {
				return err
			}
			e.StreamVersion++
			return b.Put(key(44), eventstore.MarshalEnvelope(nil, &e))
		}, "position 44"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyLog(t, clean)
			tamper(t, dir, c.edit)
			code, out := runVerify(t, dir)
			if code != exitFailure || !strings.Contains(out, c.wantAt) {
				t.Fatalf("verify = exit %d, want exit 1 naming %s:\n%s", code, c.wantAt, out)
			}
			t.Logf("%s: %s", c.name, strings.TrimSpace(out))
		})
	}
}

func TestReplayVerifyMissingLog(t *testing.T) {
	code, out := runVerify(t, t.TempDir())
	if code != exitFailure || !strings.Contains(out, "no event log") {
		t.Fatalf("verify of an empty dir = exit %d:\n%s", code, out)
	}
}
