package projections

import (
	"bytes"
	"encoding/binary"
	"time"

	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
)

// The job view keeps terminal jobs, which are most of a long-running
// orchestrator's jobs and never change again, and queued jobs, which can be
// most of its memory while a burst waits for workers, in a compact binary
// form instead of one *JobView (with its maps and strings) each:
//
//   - jobRef: one uint64 per job in Seq order, holding the status code and
//     either a slot in Jobs.live (the *JobView of a scheduled, accepted or
//     running job) or the place of the job's compact record in the terminal
//     store or the queue store.
//   - jobStore: append-only 64 KiB chunks of the compact records (varints
//     and length-prefixed or interned strings; see encodeJob) of terminal
//     jobs.
//   - queueStore: 16 KiB chunks of the compact records of queued jobs, each
//     chunk dropped once none of its records is current (jobs_queue.go).
//   - jobIDs: id -> index in Jobs.order; canonical UUID ids are keyed by their
//     16 bytes, any other id by the string.
//   - internTable: repeated strings (queue, name, submitter, worker, reason,
//     label keys and values) stored once and referenced by number.
//
// A job is compacted only when its status is terminal or queued and every
// field round trips exactly (times in UTC or Local without a monotonic reading); any other
// job stays a *JobView.

// Status codes kept in a jobRef, so status filters need no decoding.
// statusOther (0) means a status string outside the known ones (only ever on
// a live view).
const statusOther = 0

var statusByCode = [...]domain.JobStatus{
	1: domain.JobStatusQueued,
	2: domain.JobStatusScheduled,
	3: domain.JobStatusAccepted,
	4: domain.JobStatusRunning,
	5: domain.JobStatusSucceeded,
	6: domain.JobStatusFailed,
	7: domain.JobStatusCancelled,
	8: domain.JobStatusTimedOut,
}

func statusCode(s domain.JobStatus) uint8 {
	switch s {
	case domain.JobStatusQueued:
		return 1
	case domain.JobStatusScheduled:
		return 2
	case domain.JobStatusAccepted:
		return 3
	case domain.JobStatusRunning:
		return 4
	case domain.JobStatusSucceeded:
		return 5
	case domain.JobStatusFailed:
		return 6
	case domain.JobStatusCancelled:
		return 7
	case domain.JobStatusTimedOut:
		return 8
	}
	return statusOther
}

// jobRef locates one job: bits 56-63 the status code, bits 54-55 the kind:
// live (bits 0-31 the slot in Jobs.live), stored (bits 0-53 the compact
// record's address in the jobStore) or queued (bits 0-53 its address in the
// queueStore).
type jobRef uint64

const (
	refKind    = jobRef(3) << 54
	refStored  = jobRef(0) << 54
	refQueued  = jobRef(1) << 54
	refLive    = jobRef(2) << 54
	refAddrMax = jobRef(1)<<54 - 1
)

func liveRef(code uint8, slot uint32) jobRef { return jobRef(code)<<56 | refLive | jobRef(slot) }
func storedRef(code uint8, addr uint64) jobRef {
	return jobRef(code)<<56 | refStored | jobRef(addr)&refAddrMax
}
func queuedRef(code uint8, addr uint64) jobRef {
	return jobRef(code)<<56 | refQueued | jobRef(addr)&refAddrMax
}
func (r jobRef) code() uint8  { return uint8(r >> 56) }
func (r jobRef) live() bool   { return r&refKind == refLive }
func (r jobRef) queued() bool { return r&refKind == refQueued }
func (r jobRef) slot() uint32 { return uint32(r) }
func (r jobRef) addr() uint64 { return uint64(r & refAddrMax) }

// jobStore is an append-only arena of compact records in fixed-size chunks,
// so growing it never copies what is stored. An address is the chunk number
// shifted left by 24 bits plus the offset in the chunk; a record larger than
// a chunk gets a chunk of its own at offset 0.
type jobStore struct {
	chunks [][]byte
	bytes  int // total capacity of the chunks
}

const storeChunk = 64 << 10

func (s *jobStore) add(rec []byte) uint64 {
	n := len(s.chunks)
	if n == 0 || len(s.chunks[n-1])+len(rec) > cap(s.chunks[n-1]) {
		size := max(storeChunk, len(rec))
		s.chunks = append(s.chunks, make([]byte, 0, size))
		s.bytes += size
		n++
	}
	c := s.chunks[n-1]
	off := len(c)
	s.chunks[n-1] = append(c, rec...)
	return uint64(n-1)<<24 | uint64(off)
}

func (s *jobStore) record(addr uint64) []byte {
	return s.chunks[addr>>24][addr&(1<<24-1):]
}

// internTable numbers repeated strings. It is bounded: once full, or for
// long strings, records hold the bytes themselves.
type internTable struct {
	idx  map[string]uint32
	strs []string
}

const (
	internMax    = 1 << 14
	internMaxLen = 64
)

func (t *internTable) lookup(s string) (uint32, bool) {
	if len(s) > internMaxLen {
		return 0, false
	}
	if i, ok := t.idx[s]; ok {
		return i, true
	}
	if len(t.strs) >= internMax {
		return 0, false
	}
	if t.idx == nil {
		t.idx = map[string]uint32{}
	}
	s = string([]byte(s)) // do not pin the buffer s was decoded from
	i := uint32(len(t.strs))
	t.idx[s] = i
	t.strs = append(t.strs, s)
	return i, true
}

// jobIDs maps a job id to its index in Jobs.order. Ids in a canonical
// 128-bit form, the server's own (ULIDs) and canonical UUIDs, are keyed by
// their 16 bytes: no string is kept for them.
type jobIDs struct {
	uuid  map[[16]byte]uint32
	ulid  map[[16]byte]uint32
	other map[string]uint32
}

func newJobIDs() jobIDs {
	return jobIDs{uuid: map[[16]byte]uint32{}, ulid: map[[16]byte]uint32{}, other: map[string]uint32{}}
}

func (x *jobIDs) get(id string) (uint32, bool) {
	var i uint32
	var ok bool
	switch form, u := parseJobID(id); form {
	case flagUUID:
		i, ok = x.uuid[u]
	case flagULID:
		i, ok = x.ulid[u]
	default:
		i, ok = x.other[id]
	}
	return i, ok
}

func (x *jobIDs) put(id string, i uint32) {
	switch form, u := parseJobID(id); form {
	case flagUUID:
		x.uuid[u] = i
	case flagULID:
		x.ulid[u] = i
	default:
		x.other[id] = i
	}
}

// lookup returns the index of the id a record holds in form (flagUUID,
// flagULID or 0) as b's first bytes.
func (x *jobIDs) lookup(form byte, b []byte) (uint32, bool) {
	var i uint32
	var ok bool
	switch form {
	case flagUUID:
		i, ok = x.uuid[[16]byte(b)]
	case flagULID:
		i, ok = x.ulid[[16]byte(b)]
	default:
		i, ok = x.other[string(b)]
	}
	return i, ok
}

// parseJobID returns the 16 bytes of id and its form: flagUUID or flagULID
// when it is in that canonical form, else 0.
func parseJobID(id string) (byte, [16]byte) {
	if u, ok := parseUUID(id); ok {
		return flagUUID, u
	}
	if u, ok := parseULID(id); ok {
		return flagULID, u
	}
	return 0, [16]byte{}
}

// formatJobID is parseJobID's inverse.
func formatJobID(form byte, u []byte) string {
	if form == flagULID {
		return formatULID(u)
	}
	return formatUUID(u)
}

// crockford is Crockford's base32 alphabet in lower case, as the server
// writes its ids (core.newID).
const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

// crockfordValue maps a byte to its digit in crockford, or 0xff.
var crockfordValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(crockford); i++ {
		t[crockford[i]] = byte(i)
	}
	return t
}()

// parseULID parses the canonical form only (26 lower-case digits of
// crockford, the first at most 7: 128 bits), so formatULID gives back the
// same string.
func parseULID(s string) (u [16]byte, ok bool) {
	if len(s) != 26 || s[0] > '7' {
		return u, false
	}
	var hi, lo uint64
	for i := 0; i < 26; i++ {
		v := crockfordValue[s[i]]
		if v == 0xff {
			return u, false
		}
		hi = hi<<5 | lo>>59
		lo = lo<<5 | uint64(v)
	}
	binary.BigEndian.PutUint64(u[:8], hi)
	binary.BigEndian.PutUint64(u[8:], lo)
	return u, true
}

func formatULID(u []byte) string {
	hi, lo := binary.BigEndian.Uint64(u[:8]), binary.BigEndian.Uint64(u[8:16])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// parseUUID parses the canonical form only (36 characters, lowercase hex,
// dashes at 8, 13, 18 and 23), so formatUUID gives back the same string.
func parseUUID(s string) (u [16]byte, ok bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	j := 0
	for i := 0; i < 36; i += 2 {
		if s[i] == '-' {
			i--
			continue
		}
		hi, ok1 := lowerHex(s[i])
		lo, ok2 := lowerHex(s[i+1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[j] = hi<<4 | lo
		j++
	}
	return u, j == 16
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func formatUUID(u []byte) string {
	var id eventstore.ID
	copy(id[:], u)
	return id.String()
}

// Time kinds, two bits per time field in a record's second byte.
const (
	timeZero  = 0 // time.Time{}
	timeDelta = 1 // UTC, nanoseconds since the previous timeDelta field (or the Unix epoch)
	timeUTC   = 2 // UTC, Unix seconds and nanoseconds
	timeLocal = 3 // in time.Local (as msgpack decodes snapshots): Unix seconds and nanoseconds
)

// maxDeltaSec bounds the times that fit in int64 Unix nanoseconds.
const maxDeltaSec = 9_000_000_000

// timeKind returns how t is stored, or false when no kind gives t back
// exactly (a monotonic reading, another location).
func timeKind(t time.Time) (uint8, bool) {
	if t == (time.Time{}) {
		return timeZero, true
	}
	sec, nsec := t.Unix(), int64(t.Nanosecond())
	switch t.Location() {
	case time.UTC:
		if time.Unix(sec, nsec).UTC() != t {
			return 0, false
		}
		if -maxDeltaSec < sec && sec < maxDeltaSec {
			return timeDelta, true
		}
		return timeUTC, true
	case time.Local:
		if time.Unix(sec, nsec) != t {
			return 0, false
		}
		return timeLocal, true
	}
	return 0, false
}

// Record flags, the first byte of a record.
const (
	flagUUID   = 1 << 0 // the id is 16 bytes of a canonical UUID
	flagCancel = 1 << 1 // CancelRequested
	flagULID   = 1 << 2 // the id is 16 bytes of a canonical ULID
	flagIDForm = flagUUID | flagULID
)

// jobEncoder builds compact records. It is used under the write lock.
type jobEncoder struct {
	buf    []byte
	intern *internTable
}

// encodeJob returns v's compact record (valid until the next call), or false
// when v cannot be stored compactly and exactly.
//
// Layout: flags, time kinds, status code, queue, worker, labels, id, name,
// submitter, selector, priority, resources (3), parked, attempt,
// max attempts, timeout, submitted/scheduled/started/ended times, exit code,
// signal, reason, runtime, position. Seq is the record's place in the order.
// Filter fields come first so a filter can match without decoding the rest.
func (e *jobEncoder) encodeJob(v *JobView) ([]byte, bool) {
	times := [4]time.Time{v.SubmittedAt, v.ScheduledAt, v.StartedAt, v.EndedAt}
	var kinds [4]uint8
	for i, t := range times {
		k, ok := timeKind(t)
		if !ok {
			return nil, false
		}
		kinds[i] = k
	}
	code := statusCode(v.Status)
	if code == statusOther {
		return nil, false
	}
	form, u := parseJobID(v.ID)
	flags := form
	if v.CancelRequested {
		flags |= flagCancel
	}
	b := append(e.buf[:0], flags, kinds[0]|kinds[1]<<2|kinds[2]<<4|kinds[3]<<6, code)
	b = e.str(b, v.Queue)
	b = e.str(b, v.Worker)
	b = e.strMap(b, v.Labels)
	if form != 0 {
		b = append(b, u[:]...)
	} else {
		b = binary.AppendUvarint(b, uint64(len(v.ID)))
		b = append(b, v.ID...)
	}
	b = e.str(b, v.Name)
	b = e.str(b, v.Submitter)
	b = e.strMap(b, v.Selector)
	b = binary.AppendVarint(b, int64(v.Priority))
	b = binary.AppendVarint(b, v.Resources.Slots)
	b = binary.AppendVarint(b, v.Resources.CPUMillis)
	b = binary.AppendVarint(b, v.Resources.MemoryBytes)
	b = e.str(b, v.Parked)
	b = binary.AppendUvarint(b, uint64(v.Attempt))
	b = binary.AppendVarint(b, int64(v.MaxAttempts))
	b = binary.AppendVarint(b, int64(v.Timeout))
	var prev int64
	for i, t := range times {
		switch kinds[i] {
		case timeDelta:
			ns := t.UnixNano()
			b = binary.AppendVarint(b, int64(uint64(ns)-uint64(prev)))
			prev = ns
		case timeUTC, timeLocal:
			b = binary.AppendVarint(b, t.Unix())
			b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
		}
	}
	b = binary.AppendVarint(b, int64(v.ExitCode))
	b = e.str(b, v.Signal)
	b = e.str(b, v.Reason)
	b = binary.AppendVarint(b, int64(v.Runtime))
	b = binary.AppendUvarint(b, v.Position)
	e.buf = b
	return b, true
}

// str appends s: uvarint n then, when n is odd, s is interned string n>>1,
// else n>>1 bytes of s follow.
func (e *jobEncoder) str(b []byte, s string) []byte {
	if s == "" {
		return append(b, 0)
	}
	if i, ok := e.intern.lookup(s); ok {
		return binary.AppendUvarint(b, uint64(i)<<1|1)
	}
	b = binary.AppendUvarint(b, uint64(len(s))<<1)
	return append(b, s...)
}

// strMap appends m: uvarint 0 for nil, else len(m)+1 and the pairs.
func (e *jobEncoder) strMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(m))+1)
	for k, v := range m {
		b = e.str(b, k)
		b = e.str(b, v)
	}
	return b
}

// jobDecoder reads one compact record. Records are written by encodeJob
// only, so it trusts them.
type jobDecoder struct {
	b      []byte
	intern []string
}

func (d *jobDecoder) uvarint() uint64 {
	x, n := binary.Uvarint(d.b)
	d.b = d.b[n:]
	return x
}

func (d *jobDecoder) varint() int64 {
	x, n := binary.Varint(d.b)
	d.b = d.b[n:]
	return x
}

// strBytes returns the next string's bytes, or the interned string.
func (d *jobDecoder) strRaw() ([]byte, string, bool) {
	n := d.uvarint()
	if n&1 == 1 {
		return nil, d.intern[n>>1], true
	}
	raw := d.b[:n>>1]
	d.b = d.b[n>>1:]
	return raw, "", false
}

func (d *jobDecoder) str() string {
	raw, s, interned := d.strRaw()
	if interned {
		return s
	}
	return string(raw)
}

// strEq reports whether the next string equals want, without allocating.
func (d *jobDecoder) strEq(want string) bool {
	raw, s, interned := d.strRaw()
	if interned {
		return s == want
	}
	return string(raw) == want
}

func (d *jobDecoder) skipStr() { d.strRaw() }

func (d *jobDecoder) strMap() map[string]string {
	n := d.uvarint()
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n-1)
	for i := uint64(1); i < n; i++ {
		k := d.str()
		m[k] = d.str()
	}
	return m
}

// decodeJob decodes the record at the start of b into v.
func decodeJob(b []byte, intern []string, seq uint64, v *JobView) {
	decodeJobID(b, intern, seq, "", v)
}

// decodeJobID is decodeJob for a job whose id the caller has at hand (when
// id is not ""), which spares formatting and allocating it.
func decodeJobID(b []byte, intern []string, seq uint64, id string, v *JobView) {
	d := jobDecoder{b: b, intern: intern}
	flags, kinds, code := d.b[0], d.b[1], d.b[2]
	d.b = d.b[3:]
	*v = JobView{Status: statusByCode[code], CancelRequested: flags&flagCancel != 0, Seq: seq}
	v.Queue = d.str()
	v.Worker = d.str()
	v.Labels = d.strMap()
	if form := flags & flagIDForm; form != 0 {
		if v.ID = id; id == "" {
			v.ID = formatJobID(form, d.b[:16])
		}
		d.b = d.b[16:]
	} else {
		n := d.uvarint()
		if v.ID = id; id == "" {
			v.ID = string(d.b[:n])
		}
		d.b = d.b[n:]
	}
	v.Name = d.str()
	v.Submitter = d.str()
	v.Selector = d.strMap()
	v.Priority = int(d.varint())
	v.Resources.Slots = d.varint()
	v.Resources.CPUMillis = d.varint()
	v.Resources.MemoryBytes = d.varint()
	v.Parked = d.str()
	v.Attempt = uint32(d.uvarint())
	v.MaxAttempts = int(d.varint())
	v.Timeout = time.Duration(d.varint())
	var prev int64
	for i, t := range [4]*time.Time{&v.SubmittedAt, &v.ScheduledAt, &v.StartedAt, &v.EndedAt} {
		switch kinds >> (2 * i) & 3 {
		case timeDelta:
			ns := int64(uint64(prev) + uint64(d.varint()))
			*t = time.Unix(0, ns).UTC()
			prev = ns
		case timeUTC:
			sec := d.varint()
			*t = time.Unix(sec, int64(d.uvarint())).UTC()
		case timeLocal:
			sec := d.varint()
			*t = time.Unix(sec, int64(d.uvarint()))
		}
	}
	v.ExitCode = int(d.varint())
	v.Signal = d.str()
	v.Reason = d.str()
	v.Runtime = time.Duration(d.varint())
	v.Position = d.uvarint()
}

// find returns the number of s, without adding it.
func (t *internTable) find(s string) (uint32, bool) {
	i, ok := t.idx[s]
	return i, ok
}

// encodedStr returns how records hold s. A string is either in the table, and
// then every record refers to it (it was added before the first record that
// holds it, since a full table never takes more), or in none: so the bytes
// are the same in every record and a filter can compare them whole.
func (t *internTable) encodedStr(s string) []byte {
	if s == "" {
		return []byte{0}
	}
	if i, ok := t.find(s); ok {
		return binary.AppendUvarint(nil, uint64(i)<<1|1)
	}
	b := binary.AppendUvarint(nil, uint64(len(s))<<1)
	return append(b, s...)
}

// recordMatcher matches compact records against a filter's queue, worker and
// labels (the status is checked on the jobRef).
type recordMatcher struct {
	f             *JobFilter
	queue, worker []byte // encoded f.Queue and f.Worker, nil when not filtered
}

func newRecordMatcher(f *JobFilter, t *internTable) recordMatcher {
	m := recordMatcher{f: f}
	if f.Queue != "" {
		m.queue = t.encodedStr(f.Queue)
	}
	if f.Worker != "" {
		m.worker = t.encodedStr(f.Worker)
	}
	return m
}

// match reports whether the record at the start of b matches, without
// allocating.
func (m *recordMatcher) match(b []byte, intern []string) bool {
	b = b[3:] // flags, time kinds, status
	if m.queue != nil && !bytes.HasPrefix(b, m.queue) {
		return false
	}
	if m.worker == nil && len(m.f.Labels) == 0 {
		return true
	}
	d := jobDecoder{b: b, intern: intern}
	d.skipStr()
	if m.worker != nil && !bytes.HasPrefix(d.b, m.worker) {
		return false
	}
	if len(m.f.Labels) == 0 {
		return true
	}
	d.skipStr()
	n := d.uvarint()
	if n == 0 {
		n = 1
	}
	labels := d.b
	for k, want := range m.f.Labels {
		// v.Labels[k] != want, where a missing key reads "".
		d.b = labels
		ok := want == ""
		for i := uint64(1); i < n; i++ {
			if d.strEq(k) {
				ok = d.strEq(want)
				break
			}
			d.skipStr()
		}
		if !ok {
			return false
		}
	}
	return true
}
