package logstore

import "testing"

// The limit itself is tested by logstoretest (conformance_test.go).
func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{64 << 20: "64 MiB", 1 << 30: "1 GiB", 1536: "1536 bytes", 4096: "4 KiB", 1: "1 byte"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
