package replay

import (
	"context"
	"sync"

	"github.com/hodei-jobs/hodei/eventstore"
)

// ReadAhead wraps a log for one front-to-back pass (Verify, Export) so that
// reading overlaps checking: one goroutine reads and decodes the next pages
// while the caller works on the current one, and, when the log keeps a stream
// index (StreamIndex), another reads the whole index at once, so Verify's
// index check finds it in memory. Nothing is checked here; every answer is
// exactly what the wrapped log returns (errors included), only earlier.
//
// Reads that do not continue where the last one ended go straight to the
// wrapped log. The index is read when ReadAhead is called, so use it on a log
// nobody appends to during the pass (a bbolt file opened read-only), as
// Verify's index check already assumes. Call stop when done: it ends the
// goroutines and waits for them.
func ReadAhead(ctx context.Context, log eventstore.Reader) (r eventstore.Reader, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	ra := &readAhead{log: log, pages: make(chan readPage, 4), next: 1}
	ra.wg.Add(1)
	go ra.read(ctx)
	if idx, ok := log.(StreamIndex); ok {
		ra.idx = &indexAhead{src: idx, done: make(chan struct{})}
		ra.wg.Add(1)
		go func() {
			defer ra.wg.Done()
			ra.idx.load(ctx)
		}()
	}
	stop = func() {
		cancel()
		for range ra.pages { // unblock the reader
		}
		ra.wg.Wait()
	}
	h, isHeader := log.(Header)
	switch {
	case ra.idx != nil && isHeader:
		return &readAheadIndexHeader{ra, h}, stop
	case ra.idx != nil:
		return &readAheadIndex{ra}, stop
	case isHeader:
		return &readAheadHeader{ra, h}, stop
	}
	return ra, stop
}

// readAheadPage is how far ahead the reader goes, in events per page (the
// page size Verify asks for).
const readAheadPage = 4096

type readPage struct {
	from uint64
	envs []eventstore.Envelope
	err  error
}

type readAhead struct {
	log   eventstore.Reader
	pages chan readPage
	wg    sync.WaitGroup
	idx   *indexAhead

	mu   sync.Mutex
	next uint64                // the position the buffered pages continue from
	buf  []eventstore.Envelope // rest of the current page
	done bool                  // the reader stopped (end of log, error, cancel)
}

func (ra *readAhead) read(ctx context.Context) {
	defer ra.wg.Done()
	defer close(ra.pages)
	for from := uint64(1); ; {
		envs, err := ra.log.ReadAll(ctx, from, readAheadPage)
		select {
		case ra.pages <- readPage{from: from, envs: envs, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil || len(envs) == 0 {
			return
		}
		from = envs[len(envs)-1].Position + 1
	}
}

// ReadAll implements eventstore.Reader.
func (ra *readAhead) ReadAll(ctx context.Context, from uint64, limit int) ([]eventstore.Envelope, error) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if from != ra.next || ra.done || limit <= 0 {
		return ra.log.ReadAll(ctx, from, limit)
	}
	if len(ra.buf) == 0 {
		var pg readPage
		var ok bool
		select {
		case pg, ok = <-ra.pages:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		switch {
		case !ok:
			ra.done = true
			return ra.log.ReadAll(ctx, from, limit)
		case pg.err != nil || len(pg.envs) == 0:
			ra.done = true
			if pg.err != nil {
				return nil, pg.err
			}
			// The end of the log when it was read: ask again, it may have grown.
			return ra.log.ReadAll(ctx, from, limit)
		}
		ra.buf = pg.envs
	}
	n := min(limit, len(ra.buf))
	out := ra.buf[:n:n]
	ra.buf = ra.buf[n:]
	ra.next = out[n-1].Position + 1
	return out, nil
}

// indexAhead holds a StreamIndex read in full.
type indexAhead struct {
	src     StreamIndex
	done    chan struct{}
	entries []indexEntry
	heads   []indexEntry
	err     error
}

type indexEntry struct {
	stream   string
	version  uint64
	position uint64
}

func (ix *indexAhead) load(ctx context.Context) {
	defer close(ix.done)
	ix.err = ix.src.ForEachStreamIndex(func(stream string, version, position uint64) error {
		if len(ix.entries)%65536 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		ix.entries = append(ix.entries, indexEntry{stream, version, position})
		return nil
	})
	if ix.err != nil {
		return
	}
	ix.err = ix.src.ForEachStream(func(stream string, version, last uint64) error {
		ix.heads = append(ix.heads, indexEntry{stream, version, last})
		return nil
	})
}

func (ix *indexAhead) each(list func() []indexEntry, fn func(string, uint64, uint64) error) error {
	<-ix.done
	if ix.err != nil {
		return ix.err
	}
	for _, e := range list() {
		if err := fn(e.stream, e.version, e.position); err != nil {
			return err
		}
	}
	return nil
}

// The wrappers below expose exactly the optional interfaces of the wrapped
// log, so Verify does (or does not) check the index and the head as it would
// without ReadAhead.

type readAheadIndex struct{ *readAhead }

func (r *readAheadIndex) ForEachStreamIndex(fn func(stream string, version, position uint64) error) error {
	return r.idx.each(func() []indexEntry { return r.idx.entries }, fn)
}

func (r *readAheadIndex) ForEachStream(fn func(stream string, version, lastPosition uint64) error) error {
	return r.idx.each(func() []indexEntry { return r.idx.heads }, fn)
}

type readAheadHeader struct {
	*readAhead
	h Header
}

func (r *readAheadHeader) Head(ctx context.Context) (eventstore.Head, error) { return r.h.Head(ctx) }

type readAheadIndexHeader struct {
	*readAhead
	h Header
}

func (r *readAheadIndexHeader) Head(ctx context.Context) (eventstore.Head, error) {
	return r.h.Head(ctx)
}

func (r *readAheadIndexHeader) ForEachStreamIndex(fn func(stream string, version, position uint64) error) error {
	return (&readAheadIndex{r.readAhead}).ForEachStreamIndex(fn)
}

func (r *readAheadIndexHeader) ForEachStream(fn func(stream string, version, lastPosition uint64) error) error {
	return (&readAheadIndex{r.readAhead}).ForEachStream(fn)
}
