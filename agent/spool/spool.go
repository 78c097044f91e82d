package spool

import (
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// File is one attempt's spooled log.
type File struct {
	path string
	f    *os.File

	mu      sync.Mutex
	size    int64
	crc     uint32
	removed bool
}

// Create creates (truncating) the spool file name in dir, creating dir if
// needed.
func Create(dir, name string) (*File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create spool %s: %w", name, err)
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create spool %s: %w", name, err)
	}
	return &File{path: path, f: f}, nil
}

// Path returns the file's path.
func (s *File) Path() string { return s.path }

// Append writes p at the end and returns the new size.
func (s *File) Append(p []byte) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return s.size, fmt.Errorf("append spool %s: %w", s.path, os.ErrClosed)
	}
	if len(p) == 0 {
		return s.size, nil
	}
	n, err := s.f.WriteAt(p, s.size)
	s.size += int64(n)
	s.crc = crc32.Update(s.crc, castagnoli, p[:n])
	if err != nil {
		return s.size, fmt.Errorf("append spool %s: %w", s.path, err)
	}
	return s.size, nil
}

// Size returns the number of bytes appended.
func (s *File) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// CRC32C returns the CRC-32C (Castagnoli) of all bytes appended.
func (s *File) CRC32C() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.crc
}

// ReadAt reads len(p) bytes (fewer at the end) from offset off. It returns
// io.EOF when off is at or past the end.
func (s *File) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	size, removed := s.size, s.removed
	s.mu.Unlock()
	if removed {
		return 0, fmt.Errorf("read spool %s: %w", s.path, os.ErrClosed)
	}
	if off >= size {
		return 0, io.EOF
	}
	if int64(len(p)) > size-off {
		p = p[:size-off]
	}
	n, err := s.f.ReadAt(p, off)
	if err != nil && err != io.EOF {
		return n, fmt.Errorf("read spool %s at %d: %w", s.path, off, err)
	}
	if n < len(p) {
		return n, fmt.Errorf("read spool %s at %d: short read %d of %d", s.path, off, n, len(p))
	}
	return n, nil
}

// Remove closes and deletes the file. Later calls are no-ops.
func (s *File) Remove() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return nil
	}
	s.removed = true
	cerr := s.f.Close()
	if err := os.Remove(s.path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove spool %s: %w", s.path, err)
	}
	if cerr != nil {
		return fmt.Errorf("remove spool %s: %w", s.path, cerr)
	}
	return nil
}
