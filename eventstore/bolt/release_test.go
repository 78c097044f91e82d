package bolt

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/eventstoretest"
)

// mappedKB is the resident size of the process's maps of path, from
// /proc/self/smaps.
func mappedKB(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	total, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && fields[len(fields)-1] == path
			continue
		}
		if in && strings.HasPrefix(line, "Rss:") {
			kb, err := strconv.Atoi(strings.Fields(line)[1])
			if err != nil {
				t.Fatalf("smaps line %q: %v", line, err)
			}
			total += kb
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}

// readBack reads the whole log and returns its payloads.
func readBack(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	for from := uint64(1); ; {
		page, err := s.ReadAll(context.Background(), from, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return out
		}
		for _, e := range page {
			out = append(out, string(e.Payload))
		}
		from = page[len(page)-1].Position + 1
	}
}

// TestReleaseMap: reading a log makes bbolt's map resident; releasing it
// gives the pages back, and the log reads the same afterwards.
func TestReleaseMap(t *testing.T) {
	s := openTemp(t, Options{ReleaseMapInterval: -1})
	ctx := context.Background()
	pad := strings.Repeat("x", 1000)
	for b := 0; b < 40; b++ {
		batch := make([]eventstore.EventData, 500)
		for i := range batch {
			batch[i] = eventstoretest.Event("test.happened", 0)
			batch[i].Payload = []byte(fmt.Sprintf("%d/%d %s", b, i, pad))
		}
		if _, err := s.Append(ctx, fmt.Sprintf("stream-%d", b), eventstore.NoStream, batch); err != nil {
			t.Fatal(err)
		}
	}
	want := readBack(t, s)
	if len(want) != 20000 {
		t.Fatalf("read %d events, want 20000", len(want))
	}
	before := mappedKB(t, s.path)
	if before < 10_000 {
		t.Fatalf("after reading 20 MB of events the map holds %d kB resident, want more than 10,000", before)
	}
	if err := s.releaseMapOnce(); err != nil {
		t.Fatalf("releaseMapOnce() = %v", err)
	}
	if after := mappedKB(t, s.path); after > before/10 {
		t.Fatalf("after release the map holds %d kB resident (%d before), want a tenth at most", after, before)
	}
	if got := readBack(t, s); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatal("the log reads differently after its map was released")
	}

	// The store's own loop does the same.
	s2 := openTemp(t, Options{ReleaseMapInterval: 20 * time.Millisecond})
	if _, err := s2.Append(ctx, "s", eventstore.NoStream, evs(2000, pad)); err != nil {
		t.Fatal(err)
	}
	_ = readBack(t, s2)
	deadline := time.Now().Add(10 * time.Second)
	for mappedKB(t, s2.path) > 256 {
		if time.Now().After(deadline) {
			t.Fatalf("the release loop left %d kB of the map resident for 10s (stopped: %v)", mappedKB(t, s2.path), s2.releaseErr.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
