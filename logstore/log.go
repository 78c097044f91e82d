package logstore

import (
	"container/list"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// log is the in-memory state of one attempt's log. It is loaded lazily from
// disk (file size plus meta) and dropped again when idle, so memory holds
// only logs in use, open or not yet synced.
type log struct {
	s    *Store
	key  key
	refs atomic.Int32  // calls and followers using the entry; changed under s.mu (+) or freely (-)
	used atomic.Bool   // touched since the last eviction sweep
	elem *list.Element // in s.open while a handle is open; guarded by s.fdMu

	mu       sync.Mutex
	loaded   bool
	exists   bool   // the .log file exists
	size     uint64 // stored bytes: the file's size
	received uint64 // agent bytes acknowledged; == size unless truncated
	m        meta   // the truncation and finish record, as on disk
	crc      uint32 // CRC-32C of the first crcN stored bytes
	crcN     uint64
	h        *handle
	dirty    bool          // written since the last fsync
	newFile  bool          // created: its directory entries are not synced yet
	notify   chan struct{} // closed on the next change; made by a waiting follower
}

// handle is an open log file shared by the writer and readers. Readers hold
// a reference while they read outside the log's lock; an evicted handle is
// closed by whoever drops the last reference.
type handle struct {
	f       *os.File
	refs    int // guarded by the log's mu
	evicted bool
}

func (l *log) loadLocked() error {
	if l.loaded {
		return nil
	}
	var size uint64
	exists := false
	fi, err := os.Stat(l.s.logPath(l.key))
	switch {
	case err == nil:
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("load: %s is not a regular file", l.s.logPath(l.key))
		}
		exists, size = true, uint64(fi.Size())
	case errors.Is(err, fs.ErrNotExist):
	default:
		return fmt.Errorf("load: %w", err)
	}
	m, _, err := readMeta(l.s.metaPath(l.key))
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if m.Truncated && size < m.MarkerEnd {
		return fmt.Errorf("load: log has %d bytes, its truncation record says %d", size, m.MarkerEnd)
	}
	l.exists, l.size, l.m = exists, size, m
	l.received = size
	if m.Truncated {
		// After a restart the count of dropped bytes restarts from the last
		// record; Finish makes it exact again.
		l.received = max(m.Received, m.TruncatedAt, m.AgentBytes)
	}
	l.loaded = true
	return nil
}

// idleLocked reports whether the entry holds nothing that is not on disk
// (for a truncated log that includes the count of bytes received).
func (l *log) idleLocked() bool {
	return l.h == nil && !l.dirty && !l.newFile && (!l.m.Truncated || l.received == l.m.Received)
}

// openLocked opens the log file if it is not open, creating it (and the
// job's directory) when create is set. opened reports a new handle, after
// which the caller must let the store evict excess handles.
func (l *log) openLocked(create bool) (opened bool, err error) {
	l.used.Store(true)
	if l.h != nil {
		return false, nil
	}
	flag := os.O_RDWR
	if create && !l.exists {
		if err := os.Mkdir(l.s.jobDir(l.key.job), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return false, err
		}
		flag |= os.O_CREATE
	}
	f, err := os.OpenFile(l.s.logPath(l.key), flag, 0o600)
	if err != nil {
		return false, err
	}
	if !l.exists {
		l.exists, l.newFile = true, true
	}
	l.h = &handle{f: f}
	l.s.markOpen(l)
	return true, nil
}

func (l *log) unrefLocked(h *handle) {
	h.refs--
	if h.refs == 0 && h.evicted {
		_ = h.f.Close() // a reader's reference: nothing to flush
	}
}

// wakeLocked wakes every follower waiting for a change.
func (l *log) wakeLocked() {
	if l.notify != nil {
		close(l.notify)
		l.notify = nil
	}
}

// writeLocked appends p to the file at the stored end.
func (l *log) writeLocked(p []byte) error {
	n, err := l.h.f.WriteAt(p, int64(l.size))
	if n > 0 {
		if l.crcN == l.size {
			l.crc = crc32.Update(l.crc, castagnoli, p[:n])
			l.crcN += uint64(n)
		}
		l.size += uint64(n)
		if !l.dirty {
			l.dirty = true
			l.s.markDirty(l)
		}
		l.wakeLocked()
	}
	return err
}

func (l *log) append(offset uint64, data []byte) (ack uint64, opened bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.loadLocked(); err != nil {
		return 0, false, err
	}
	end := offset + uint64(len(data))
	if end < offset {
		return l.received, false, &FieldError{Field: "offset", Value: fmt.Sprint(offset),
			Reason: fmt.Sprintf("offset plus %d bytes overflows", len(data))}
	}
	switch {
	case l.m.Finished:
		if end <= l.received {
			return l.received, false, nil
		}
		return l.received, false, ErrFinished
	case l.m.Truncated:
		// Nothing more is stored, so nothing can be missing: count and ack.
		l.received = max(l.received, end)
		return l.received, false, nil
	case offset > l.size:
		return l.size, false, &GapError{Want: l.size, Got: offset}
	}
	skip := l.size - offset
	if skip >= uint64(len(data)) {
		return l.size, false, nil
	}
	data = data[skip:]
	if opened, err = l.openLocked(true); err != nil {
		return l.size, opened, err
	}
	keep, truncate := data, false
	if l.s.limit > 0 && l.size+uint64(len(data)) > l.s.limit {
		room := uint64(0)
		if l.size < l.s.limit {
			room = l.s.limit - l.size
		}
		keep, truncate = data[:room], true
	}
	if len(keep) > 0 {
		err = l.writeLocked(keep)
		l.received = l.size
		if err != nil {
			return l.size, opened, err
		}
	}
	if truncate {
		if err := l.truncateLocked(end); err != nil {
			return l.received, opened, err
		}
	}
	return l.received, opened, nil
}

// truncateLocked writes the truncation marker and records it durably: the
// record is what tells a restarted store (maybe with another limit) that the
// log is truncated, so the marker is fsynced before the record is written.
func (l *log) truncateLocked(received uint64) error {
	mk := markerLine(l.s.limit)
	l.m.Truncated = true
	l.m.TruncatedAt = l.size
	l.m.MarkerEnd = l.size + uint64(len(mk))
	l.received = received
	if err := l.writeLocked(mk); err != nil {
		return fmt.Errorf("write truncation marker: %w", err)
	}
	if err := l.syncLocked(); err != nil {
		return fmt.Errorf("record truncation: %w", err)
	}
	m := l.m
	m.Received = received
	if err := writeMeta(l.s.metaPath(l.key), m); err != nil {
		return fmt.Errorf("record truncation: %w", err)
	}
	l.m.Received = received
	return nil
}

// markerLine is the one line stored in place of everything past the limit.
func markerLine(limit uint64) []byte {
	return fmt.Appendf(nil, "\r\n[hodei: log truncated at %s; further output not stored]\r\n", humanBytes(limit))
}

func humanBytes(n uint64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	if n == 1 {
		return "1 byte"
	}
	return fmt.Sprintf("%d bytes", n)
}

// syncLocked fsyncs the file (and, once, the directory entries that make a
// new file durable) while holding the lock: for Finish, Seal, truncation
// and eviction, which are rare. The periodic sync uses sync instead.
func (l *log) syncLocked() error {
	if !l.dirty && !l.newFile {
		return nil
	}
	f := (*os.File)(nil)
	if l.h != nil {
		f = l.h.f
	} else {
		// An earlier sync failed after its handle was evicted: fsync through a
		// fresh descriptor, which flushes the same file.
		var err error
		if f, err = os.OpenFile(l.s.logPath(l.key), os.O_RDWR, 0); err != nil {
			return err
		}
		defer f.Close()
	}
	err := f.Sync()
	if err == nil && l.newFile {
		err = l.syncDirs()
	}
	if err != nil {
		l.s.markDirty(l)
		return err
	}
	l.dirty, l.newFile = false, false
	return nil
}

// syncDirs makes a new log file's name durable: its entry in the job's
// directory, and the job directory's entry in the root.
func (l *log) syncDirs() error {
	if err := syncDir(l.s.jobDir(l.key.job)); err != nil {
		return err
	}
	return syncDir(l.s.dir)
}

// sync is the periodic sync of one log: the fsync runs outside the lock, so
// appends continue meanwhile (one that lands during it marks the log dirty
// again for the next round).
func (l *log) sync() error {
	l.mu.Lock()
	if !l.dirty && !l.newFile {
		l.mu.Unlock()
		return nil
	}
	h := l.h
	if h == nil {
		err := l.syncLocked()
		l.mu.Unlock()
		return err
	}
	h.refs++
	newFile := l.newFile
	l.dirty = false
	l.mu.Unlock()

	err := h.f.Sync()
	if err == nil && newFile {
		err = l.syncDirs()
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	l.unrefLocked(h)
	if err != nil {
		if !l.dirty {
			l.dirty = true
			l.s.markDirty(l)
		}
		return err
	}
	if newFile {
		l.newFile = false
	}
	return nil
}

// evict closes the log's handle after the store took it off the open list,
// syncing it first if it has unsynced writes.
func (l *log) evict() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h == nil {
		return nil
	}
	err := l.syncLocked()
	h := l.h
	l.h = nil
	h.evicted = true
	if h.refs == 0 {
		if cerr := h.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// closeHandle takes the log off the open list and closes its handle; for
// Store.Close, when no reader can hold it.
func (l *log) closeHandle() error {
	l.s.fdMu.Lock()
	if l.elem != nil {
		l.s.open.Remove(l.elem)
		l.elem = nil
	}
	l.s.fdMu.Unlock()
	return l.evict()
}

// storedCRCLocked returns the CRC-32C of all stored bytes, reading what the
// running CRC does not cover (after a restart) from the file.
func (l *log) storedCRCLocked() (uint32, error) {
	if l.crcN == l.size {
		return l.crc, nil
	}
	f, err := os.Open(l.s.logPath(l.key))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	crc, n := uint32(0), uint64(0)
	buf := make([]byte, 64<<10)
	for n < l.size {
		k, err := f.ReadAt(buf[:min(uint64(len(buf)), l.size-n)], int64(n))
		crc = crc32.Update(crc, castagnoli, buf[:k])
		n += uint64(k)
		if err != nil && !(err == io.EOF && n == l.size) {
			return 0, fmt.Errorf("checksum stored log: %w", err)
		}
	}
	l.crc, l.crcN = crc, n
	return crc, nil
}

func (l *log) finish(total uint64, crc uint32) (err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.loadLocked(); err != nil {
		return err
	}
	if l.m.Finished {
		if l.m.Sealed || l.m.AgentBytes != total || l.m.AgentCRC != crc {
			return fmt.Errorf("%w (sealed=%t, %d bytes, crc32c %08x)", ErrFinished, l.m.Sealed, l.m.AgentBytes, l.m.AgentCRC)
		}
		return l.mismatch()
	}
	m := l.m
	m.Finished, m.FinishedAt = true, l.s.clock.Now().UTC()
	m.AgentBytes, m.AgentCRC = total, crc
	if !m.Truncated {
		if total > l.size {
			return &GapError{Want: l.size, Got: total}
		}
		if m.StoredCRC, err = l.storedCRCLocked(); err != nil {
			return err
		}
		m.CRCChecked = true
		m.Mismatch = total != l.size || crc != m.StoredCRC
	} else {
		m.Mismatch = total < l.received
		l.received = max(l.received, total) // Dropped becomes exact
	}
	if err := l.recordLocked(m); err != nil {
		return err
	}
	return l.mismatch()
}

func (l *log) mismatch() error {
	if !l.m.Mismatch {
		return nil
	}
	stored := l.size
	if l.m.Truncated {
		stored = l.received
	}
	return &MismatchError{StoredBytes: stored, StoredCRC: l.m.StoredCRC, AgentBytes: l.m.AgentBytes, AgentCRC: l.m.AgentCRC}
}

func (l *log) seal() (opened bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.loadLocked(); err != nil {
		return false, err
	}
	if l.m.Finished {
		return false, nil
	}
	m := l.m
	m.Finished, m.Sealed, m.FinishedAt = true, true, l.s.clock.Now().UTC()
	if !l.exists {
		// An empty log, so the attempt is listed and reads give io.EOF.
		if opened, err = l.openLocked(true); err != nil {
			return opened, err
		}
	}
	return opened, l.recordLocked(m)
}

// recordLocked makes the log and the finish record m durable, then ends the
// followers.
func (l *log) recordLocked(m meta) error {
	if !l.exists {
		if _, err := l.openLocked(true); err != nil {
			return err
		}
	}
	if err := l.syncLocked(); err != nil {
		return err
	}
	m.Received = l.received
	if err := writeMeta(l.s.metaPath(l.key), m); err != nil {
		return err
	}
	l.m = m
	l.wakeLocked()
	return nil
}

func (l *log) stat() (Stat, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.loadLocked(); err != nil {
		return Stat{}, err
	}
	if !l.exists && !l.m.Finished {
		return Stat{}, ErrNotFound
	}
	st := Stat{
		JobID:       l.key.job,
		Attempt:     l.key.attempt,
		Size:        l.size,
		Received:    l.received,
		Truncated:   l.m.Truncated,
		TruncatedAt: l.m.TruncatedAt,
		Finished:    l.m.Finished,
		Sealed:      l.m.Sealed,
		FinishedAt:  l.m.FinishedAt,
		AgentBytes:  l.m.AgentBytes,
		AgentCRC:    l.m.AgentCRC,
		CRCChecked:  l.m.CRCChecked,
		Mismatch:    l.m.Mismatch,
	}
	if l.m.Truncated {
		st.Dropped = l.received - l.m.TruncatedAt
	}
	return st, nil
}

// readAt copies stored bytes at off into p. At the end of a live log it
// returns 0 and, when follow is set, a channel closed on the next change.
// At the end of a finished log it returns io.EOF (with the last bytes, for
// plain reads).
func (l *log) readAt(p []byte, off uint64, follow bool) (int, <-chan struct{}, error) {
	l.mu.Lock()
	if err := l.loadLocked(); err != nil {
		l.mu.Unlock()
		return 0, nil, err
	}
	if !follow && !l.exists && !l.m.Finished {
		l.mu.Unlock()
		return 0, nil, ErrNotFound
	}
	size, finished := l.size, l.m.Finished
	if off >= size || len(p) == 0 {
		var wait chan struct{}
		switch {
		case finished && off > size:
			l.mu.Unlock()
			return 0, nil, fmt.Errorf("%w: offset %d, log ends at %d", ErrOffset, off, size)
		case finished && off == size:
			l.mu.Unlock()
			return 0, nil, io.EOF
		case follow && len(p) > 0:
			if l.notify == nil {
				l.notify = make(chan struct{})
			}
			wait = l.notify
		}
		l.mu.Unlock()
		return 0, wait, nil
	}
	opened, err := l.openLocked(false)
	if err != nil {
		l.mu.Unlock()
		return 0, nil, err
	}
	h := l.h
	h.refs++
	l.mu.Unlock()
	if opened {
		l.s.evictExcess()
	}

	want := min(uint64(len(p)), size-off)
	n, err := h.f.ReadAt(p[:want], int64(off))
	l.mu.Lock()
	l.unrefLocked(h)
	l.mu.Unlock()
	switch {
	case uint64(n) == want:
		err = nil
	case err == io.EOF || err == nil:
		err = fmt.Errorf("log file shorter than its stored size %d: %w", size, io.ErrUnexpectedEOF)
	}
	if err == nil && !follow && finished && off+want == size {
		err = io.EOF
	}
	return n, nil, err
}
