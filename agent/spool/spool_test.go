package spool

import (
	"bytes"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"testing"
)

func TestAppendReadAtRemove(t *testing.T) {
	dir := t.TempDir()
	s, err := Create(dir+"/sub", "job.1.log")
	if err != nil {
		t.Fatalf("Create() = %v", err)
	}
	var all []byte
	for _, p := range []string{"hello ", "", "world\r\n", "\x1b[31mred\x1b[0m"} {
		n, err := s.Append([]byte(p))
		all = append(all, p...)
		if err != nil || n != int64(len(all)) {
			t.Fatalf("Append(%q) = %d, %v; want %d", p, n, err, len(all))
		}
	}
	for off := 0; off <= len(all); off++ {
		buf := make([]byte, 5)
		n, err := s.ReadAt(buf, int64(off))
		if off == len(all) {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("ReadAt(end) = %d, %v; want EOF", n, err)
			}
			continue
		}
		want := all[off:min(off+5, len(all))]
		if err != nil || !bytes.Equal(buf[:n], want) {
			t.Fatalf("ReadAt(%d) = %q, %v; want %q", off, buf[:n], err, want)
		}
	}
	if got, want := s.CRC32C(), crc32.Checksum(all, crc32.MakeTable(crc32.Castagnoli)); got != want {
		t.Fatalf("CRC32C() = %x, want %x", got, want)
	}
	if err := s.Remove(); err != nil {
		t.Fatalf("Remove() = %v", err)
	}
	if _, err := os.Stat(s.Path()); !os.IsNotExist(err) {
		t.Fatalf("Stat(after Remove) = %v, want not exist", err)
	}
	if err := s.Remove(); err != nil {
		t.Fatalf("second Remove() = %v", err)
	}
	if _, err := s.Append([]byte("x")); err == nil {
		t.Fatalf("Append(after Remove) = nil, want error")
	}
}
