package bolt

import (
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// releaseMap hands the pages of bbolt's memory map back to the kernel every
// interval until the committer exits.
//
// bbolt reads the file through a read-only shared map, so every page a
// transaction reads stays in the process's resident set until the map goes.
// In an append-only B+tree every leaf is the rightmost one while it fills and
// is read then, so without this the resident set grows with the log (about
// the file's size after a million events). MADV_DONTNEED on a read-only
// shared file map drops only the process's page table entries: the pages
// stay in the page cache, nothing can be lost (the map is never written
// through), and the next read of a page maps it again with a minor fault. A
// read transaction is held meanwhile, so bbolt cannot remap (grow) the map
// under the call; pages past the transaction's high-water mark are not
// covered this round and are on the next.
func (s *Store) releaseMap(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		if err := s.releaseMapOnce(); err != nil {
			s.releaseErr.Store(err.Error())
			return // not supported here: keep the pages, as bbolt alone would
		}
	}
}

// releaseMapOnce advises the kernel that the map's pages are not needed.
func (s *Store) releaseMapOnce() error {
	return s.db.View(func(tx *bbolt.Tx) error {
		size := tx.Size()
		if size <= 0 {
			return nil
		}
		// Info().Data is the map's address; it stays valid while tx holds
		// bbolt's map lock. A raw syscall: the map is not Go memory.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, s.db.Info().Data, uintptr(size), unix.MADV_DONTNEED); errno != 0 {
			return errno
		}
		return nil
	})
}
