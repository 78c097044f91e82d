package replay_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	bbolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/bolt"
	"github.com/hodei-jobs/hodei/eventstore/eventstoretest"
	"github.com/hodei-jobs/hodei/replay"
)

// boltLog writes n events over 7 streams into a closed bbolt file, then lets
// edit change its buckets directly, as an attacker with the file could.
func boltLog(t *testing.T, n int, edit func(tx *bbolt.Tx) error) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := bolt.Open(path, bolt.Options{IndexGeneration: 64, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 100 {
		var reqs []eventstore.AppendRequest
		for k := i; k < min(i+100, n); k++ {
			reqs = append(reqs, eventstore.AppendRequest{Stream: fmt.Sprintf("job-%d", k%7), Expected: eventstore.Any,
				Events: []eventstore.EventData{eventstoretest.Event("test.happened", 30)}})
		}
		out, err := s.AppendMany(context.Background(), reqs)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(edit); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func key(p uint64) []byte { return binary.BigEndian.AppendUint64(nil, p) }

// TestReadAheadVerifiesAlike: Verify through ReadAhead reports exactly what
// Verify on the store itself reports, intact or damaged, index included.
func TestReadAheadVerifiesAlike(t *testing.T) {
	cases := map[string]func(tx *bbolt.Tx) error{
		"intact": nil,
		"payload flipped": func(tx *bbolt.Tx) error {
			b := tx.Bucket([]byte("events"))
			v := append([]byte(nil), b.Get(key(5000))...)
			v[len(v)-70] ^= 1
			return b.Put(key(5000), v)
		},
		"event deleted": func(tx *bbolt.Tx) error { return tx.Bucket([]byte("events")).Delete(key(4097)) },
		"index entry deleted": func(tx *bbolt.Tx) error {
			c := tx.Bucket([]byte("stream_idx")).Cursor()
			k, _ := c.First()
			return c.Bucket().Delete(k)
		},
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			path := boltLog(t, 9000, edit)
			s, err := bolt.Open(path, bolt.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			want, werr := replay.Verify(context.Background(), s, nil)
			ahead, stop := replay.ReadAhead(context.Background(), s)
			got, gerr := replay.Verify(context.Background(), ahead, nil)
			stop()
			if fmt.Sprint(werr) != fmt.Sprint(gerr) {
				t.Fatalf("Verify(ReadAhead) error = %v, Verify = %v", gerr, werr)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("Verify(ReadAhead) differs from Verify (-store +ahead):\n%s", diff)
			}
			if name == "intact" != got.OK() {
				t.Fatalf("Verify(%s) = %+v", name, got)
			}
		})
	}
}

func TestReadAheadOutOfOrderReads(t *testing.T) {
	ctx := context.Background()
	log := sampleLog(t)
	ahead, stop := replay.ReadAhead(ctx, tampered{log})
	defer stop()
	for _, r := range []struct {
		from  uint64
		limit int
	}{{1, 3}, {4, 2}, {10, 5}, {1, 40}, {41, 5}, {6, 2}} {
		got, err := ahead.ReadAll(ctx, r.from, r.limit)
		want, _ := tampered{log}.ReadAll(ctx, r.from, r.limit)
		if err != nil || !cmp.Equal(got, want) {
			t.Fatalf("ReadAll(%d, %d) = %d events, %v; want %d events", r.from, r.limit, len(got), err, len(want))
		}
	}
	if _, ok := ahead.(replay.Header); ok {
		t.Error("ReadAhead of a log without Head has Head")
	}
}
