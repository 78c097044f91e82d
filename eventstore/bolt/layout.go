package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/eventstore"
)

// FormatVersion is the on-disk layout version this package reads and writes.
// Open refuses a file of any other version.
const FormatVersion = 1

// Bucket and meta key names. They are part of the file format.
var (
	bucketEvents    = []byte("events")     // BE64(position) -> MarshalEnvelope
	bucketStreams   = []byte("streams")    // stream id -> BE64(version) || BE64(last position)
	bucketStreamIdx = []byte("stream_idx") // uvarint(len(id)) || id || BE64(version) -> BE64(position)
	bucketEventIDs  = []byte("event_ids")  // 16-byte event id -> BE64(position)
	bucketMeta      = []byte("meta")

	keyFormat  = []byte("format")   // BE32(FormatVersion)
	keyHead    = []byte("head")     // BE64(position) || hash (32 bytes)
	keyStoreID = []byte("store_id") // 16 random bytes, set at creation
	keyIndexed = []byte("indexed")  // BE64(position): indexes are complete up to here
)

var allBuckets = [][]byte{bucketEvents, bucketStreams, bucketStreamIdx, bucketEventIDs, bucketMeta}

const (
	headValueLen   = 8 + len(eventstore.Hash{})
	streamValueLen = 16
)

// errNotEventLog is returned by Open for a bbolt file that is not a Hodei
// event log (no meta bucket).
var errNotEventLog = errors.New("not a hodei event log (no meta bucket)")

// buckets holds the buckets of one transaction.
type buckets struct {
	events, streams, streamIdx, eventIDs, meta *bbolt.Bucket
}

func openBuckets(tx *bbolt.Tx) (buckets, error) {
	b := buckets{
		events:    tx.Bucket(bucketEvents),
		streams:   tx.Bucket(bucketStreams),
		streamIdx: tx.Bucket(bucketStreamIdx),
		eventIDs:  tx.Bucket(bucketEventIDs),
		meta:      tx.Bucket(bucketMeta),
	}
	if b.meta == nil {
		return b, errNotEventLog
	}
	for _, name := range allBuckets {
		if tx.Bucket(name) == nil {
			return b, fmt.Errorf("bucket %q missing: %w", name, eventstore.ErrCorrupt)
		}
	}
	return b, nil
}

func posKey(dst []byte, pos uint64) []byte { return binary.BigEndian.AppendUint64(dst, pos) }

// streamPrefix is the stream index key prefix of stream: uvarint(len) || id.
// The length prefix keeps "job-1" from being a prefix of "job-10".
func streamPrefix(dst []byte, stream string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(stream)))
	return append(dst, stream...)
}

func streamIdxKey(dst []byte, stream string, version uint64) []byte {
	return binary.BigEndian.AppendUint64(streamPrefix(dst, stream), version)
}

// parseStreamIdxKey splits a stream index key. The stream is returned as a
// sub-slice of k.
func parseStreamIdxKey(k []byte) (stream []byte, version uint64, err error) {
	n, w := binary.Uvarint(k)
	if w <= 0 || n > eventstore.MaxStreamIDLen || uint64(len(k)-w) != n+8 {
		return nil, 0, fmt.Errorf("stream index key %s: malformed", shortHex(k))
	}
	return k[w : w+int(n)], binary.BigEndian.Uint64(k[w+int(n):]), nil
}

func streamValue(dst []byte, version, last uint64) []byte {
	dst = binary.BigEndian.AppendUint64(dst, version)
	return binary.BigEndian.AppendUint64(dst, last)
}

func parseStreamValue(stream string, v []byte) (version, last uint64, err error) {
	if len(v) != streamValueLen {
		return 0, 0, fmt.Errorf("streams %q: value is %d bytes, want %d", stream, len(v), streamValueLen)
	}
	return binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]), nil
}

func parsePos(what string, v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%s: value is %d bytes, want 8", what, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func headValue(pos uint64, h eventstore.Hash) []byte {
	v := make([]byte, 0, headValueLen)
	v = binary.BigEndian.AppendUint64(v, pos)
	return append(v, h[:]...)
}

// logState is what the meta bucket says about the log.
type logState struct {
	head    eventstore.Head
	indexed uint64
	storeID eventstore.ID
}

// readMeta reads and checks the meta bucket.
func readMeta(meta *bbolt.Bucket) (logState, error) {
	var st logState
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("meta "+format+": %w", append(args, eventstore.ErrCorrupt)...)
	}
	f := meta.Get(keyFormat)
	if len(f) != 4 {
		return st, corrupt("%s: %d bytes, want 4", keyFormat, len(f))
	}
	if v := binary.BigEndian.Uint32(f); v != FormatVersion {
		return st, fmt.Errorf("meta %s: file is format version %d, this binary reads version %d", keyFormat, v, FormatVersion)
	}
	h := meta.Get(keyHead)
	if len(h) != headValueLen {
		return st, corrupt("%s: %d bytes, want %d", keyHead, len(h), headValueLen)
	}
	st.head.Position = binary.BigEndian.Uint64(h)
	copy(st.head.Hash[:], h[8:])
	id := meta.Get(keyStoreID)
	if len(id) != len(st.storeID) {
		return st, corrupt("%s: %d bytes, want %d", keyStoreID, len(id), len(st.storeID))
	}
	copy(st.storeID[:], id)
	ix, err := parsePos("meta "+string(keyIndexed), meta.Get(keyIndexed))
	if err != nil {
		return st, fmt.Errorf("%v: %w", err, eventstore.ErrCorrupt)
	}
	if ix > st.head.Position {
		return st, corrupt("%s: position %d is past the head %d", keyIndexed, ix, st.head.Position)
	}
	st.indexed = ix
	return st, nil
}

// initLog creates the buckets and meta of an empty log. It refuses a file
// that already holds buckets of its own.
func initLog(tx *bbolt.Tx) error {
	if err := tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
		return fmt.Errorf("%w: file holds bucket %q", errNotEventLog, name)
	}); err != nil {
		return err
	}
	for _, name := range allBuckets {
		if _, err := tx.CreateBucket(name); err != nil {
			return fmt.Errorf("create bucket %q: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	id := eventstore.NewID()
	puts := []struct{ k, v []byte }{
		{keyFormat, binary.BigEndian.AppendUint32(nil, FormatVersion)},
		{keyHead, headValue(0, eventstore.Hash{})},
		{keyStoreID, id[:]},
		{keyIndexed, posKey(nil, 0)},
	}
	for _, p := range puts {
		if err := meta.Put(p.k, p.v); err != nil {
			return fmt.Errorf("put meta %s: %w", p.k, err)
		}
	}
	return nil
}

// checkHead checks that the last stored event is the meta head and carries
// its hash. It returns a *eventstore.CorruptError naming the position.
func checkHead(b buckets, st logState) error {
	k, v := b.events.Cursor().Last()
	if st.head.Position == 0 {
		if k != nil {
			return &eventstore.CorruptError{Position: keyPos(k), Reason: "events bucket holds events but meta head is 0"}
		}
		return nil
	}
	if k == nil {
		return &eventstore.CorruptError{Position: st.head.Position, Reason: "missing: meta head names it but the events bucket is empty (truncated file?)"}
	}
	if len(k) != 8 {
		return &eventstore.CorruptError{Position: st.head.Position, Reason: fmt.Sprintf("last events key %s is not 8 bytes", shortHex(k))}
	}
	if last := keyPos(k); last != st.head.Position {
		return &eventstore.CorruptError{Position: st.head.Position,
			Reason: fmt.Sprintf("meta head names it but the last stored event is position %d", last)}
	}
	e, err := decodeAt(st.head.Position, v)
	if err != nil {
		return err
	}
	if e.Hash != st.head.Hash {
		return &eventstore.CorruptError{Position: st.head.Position, Reason: "hash does not match the meta head hash"}
	}
	if eventstore.ChainHash(&e) != e.Hash {
		return &eventstore.CorruptError{Position: st.head.Position, Reason: "hash does not match content"}
	}
	return nil
}

func keyPos(k []byte) uint64 {
	if len(k) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

// decodeAt decodes the stored value of position pos and checks that it is
// the event of that position.
func decodeAt(pos uint64, v []byte) (eventstore.Envelope, error) {
	e, err := eventstore.UnmarshalEnvelope(v)
	if err != nil {
		return e, &eventstore.CorruptError{Position: pos, Reason: "decode: " + err.Error()}
	}
	if e.Position != pos {
		return e, &eventstore.CorruptError{Position: pos, Reason: fmt.Sprintf("stored event says position %d", e.Position)}
	}
	return e, nil
}

// readEvent reads and decodes the event at pos.
func readEvent(events *bbolt.Bucket, pos uint64) (eventstore.Envelope, error) {
	var k [8]byte
	v := events.Get(posKey(k[:0], pos))
	if v == nil {
		return eventstore.Envelope{}, &eventstore.CorruptError{Position: pos, Reason: "missing: an index points to it but no event is stored"}
	}
	return decodeAt(pos, v)
}

// shortHex formats a key for an error message, eliding the middle of a
// long one (a damaged page can yield megabytes).
func shortHex(b []byte) string {
	if len(b) <= 48 {
		return fmt.Sprintf("%x", b)
	}
	return fmt.Sprintf("%x...%x (%d bytes)", b[:16], b[len(b)-8:], len(b))
}

// shortString is shortHex for names: the name itself when it is short.
func shortString(b []byte) string {
	if len(b) <= eventstore.MaxStreamIDLen {
		return string(b)
	}
	return shortHex(b)
}

// hasStreamPrefix reports whether stream index key k belongs to the stream
// whose prefix is p.
func hasStreamPrefix(k, p []byte) bool { return len(k) == len(p)+8 && bytes.HasPrefix(k, p) }
