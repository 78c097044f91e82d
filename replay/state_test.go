package replay_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/projections"
	"github.com/hodei-jobs/hodei/replay"
)

// loadRecorded imports recorded log v1 into a memory store.
// The tests that use it name positions and times of log v1 (66 events),
// which stays recorded forever.
func loadRecorded(t *testing.T) *memory.Store {
	t.Helper()
	f, err := os.Open(filepath.Join(logsDir, "v1", "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := memory.New(memory.Options{})
	if _, err := replay.Import(context.Background(), s, f, replay.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	return s
}

// reference is the state at pos the plain way: the runner from position 1.
func reference(t *testing.T, s *memory.Store, pos uint64) (jobs, workers string) {
	t.Helper()
	j, w := projections.NewJobs(), projections.NewWorkers()
	r, err := projections.NewRunner(s, command.NewCodec(), projections.RunnerOptions{}, j, w)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.CatchUpTo(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	return canonical(t, j), canonical(t, w)
}

// canonical renders a projection's whole state (MarshalState) as JSON with
// sorted keys. projections.StateHash cannot be compared here: the workers
// view encodes its map of holdings in Go's random map order (msgpack's
// SetSortMapKeys sorts only map[string]string, map[string]bool and
// map[string]any), so equal states may hash differently.
func canonical(t *testing.T, p projections.Projection) string {
	t.Helper()
	b, err := p.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := msgpack.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestStateAtMatchesFullReplay(t *testing.T) {
	ctx := context.Background()
	s := loadRecorded(t)
	head, _ := s.Head(ctx)
	codec := command.NewCodec()
	cache := t.TempDir()
	// Pass 1 fills the cache (every 10 events); pass 2 starts from it.
	for pass := 1; pass <= 2; pass++ {
		for at := uint64(1); at <= head.Position; at++ {
			st, err := replay.StateAt(ctx, s, codec, at, replay.StateOptions{CacheDir: cache, CacheEvery: 10})
			if err != nil {
				t.Fatalf("pass %d: StateAt(%d) error = %v", pass, at, err)
			}
			if st.CacheErr != nil {
				t.Fatalf("pass %d: StateAt(%d) cache error = %v", pass, at, st.CacheErr)
			}
			wantJ, wantW := reference(t, s, at)
			if diff := cmp.Diff(wantJ, canonical(t, st.Jobs)); diff != "" {
				t.Fatalf("pass %d: StateAt(%d) from snapshot %d: jobs differ from a replay from position 1 (-want +got):\n%s", pass, at, st.From, diff)
			}
			if diff := cmp.Diff(wantW, canonical(t, st.Workers)); diff != "" {
				t.Fatalf("pass %d: StateAt(%d) from snapshot %d: workers differ from a replay from position 1 (-want +got):\n%s", pass, at, st.From, diff)
			}
			if want := at / 10 * 10; pass == 2 && st.From != want {
				t.Errorf("pass 2: StateAt(%d) started from %d, want the cache entry at %d", at, st.From, want)
			}
			if st.From+st.Replayed != at {
				t.Errorf("StateAt(%d): from %d + replayed %d", at, st.From, st.Replayed)
			}
		}
	}
}

func TestStateAtUsesServerSnapshotsOnlyAtOrBeforeTarget(t *testing.T) {
	ctx := context.Background()
	s := loadRecorded(t)
	codec := command.NewCodec()
	dir := t.TempDir()
	r, err := projections.NewRunner(s, codec, projections.RunnerOptions{SnapshotDir: dir}, projections.NewJobs(), projections.NewWorkers())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.CatchUpTo(ctx, 50); err != nil {
		t.Fatal(err)
	}
	if err := r.Snapshot(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ at, from uint64 }{{60, 50}, {50, 50}, {49, 0}, {30, 0}} {
		st, err := replay.StateAt(ctx, s, codec, c.at, replay.StateOptions{SnapshotDirs: []string{dir}})
		if err != nil {
			t.Fatal(err)
		}
		if st.From != c.from {
			t.Errorf("StateAt(%d) started from %d, want %d", c.at, st.From, c.from)
		}
		wantJ, wantW := reference(t, s, c.at)
		if canonical(t, st.Jobs) != wantJ || canonical(t, st.Workers) != wantW {
			t.Errorf("StateAt(%d) differs from a full replay", c.at)
		}
	}
}

func TestStateAtIgnoresCacheOfAnotherLog(t *testing.T) {
	ctx := context.Background()
	codec := command.NewCodec()
	cache := t.TempDir()
	// Another log with the same shape but other event ids: other hashes.
	other := memory.New(memory.Options{})
	clock := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	h := command.New(other, codec, command.Options{Clock: func() time.Time { clock = clock.Add(time.Second); return clock }})
	if err := scenario(ctx, h, func() time.Time { return clock }); err != nil {
		t.Fatal(err)
	}
	if _, err := replay.StateAt(ctx, other, codec, 60, replay.StateOptions{CacheDir: cache, CacheEvery: 20}); err != nil {
		t.Fatal(err)
	}
	s := loadRecorded(t)
	st, err := replay.StateAt(ctx, s, codec, 60, replay.StateOptions{CacheDir: cache, CacheEvery: 20})
	if err != nil {
		t.Fatal(err)
	}
	if st.From != 0 || len(st.Stale) != 3 {
		t.Fatalf("StateAt over another log's cache: from %d, stale %v; want from 0 and stale [60 40 20]", st.From, st.Stale)
	}
	wantJ, wantW := reference(t, s, 60)
	if canonical(t, st.Jobs) != wantJ || canonical(t, st.Workers) != wantW {
		t.Fatal("StateAt over another log's cache differs from a full replay")
	}
}

func TestStateAtRejectsPositionsOutsideTheLog(t *testing.T) {
	s := loadRecorded(t)
	for _, at := range []uint64{0, 67, 1000} {
		if _, err := replay.StateAt(context.Background(), s, command.NewCodec(), at, replay.StateOptions{}); err == nil {
			t.Errorf("StateAt(%d) on a log of 66 events succeeded", at)
		}
	}
}

func TestPositionAt(t *testing.T) {
	s := loadRecorded(t)
	base := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) // event p is at base + p*250ms
	for _, c := range []struct {
		t    time.Time
		want uint64
	}{
		{base.Add(250 * time.Millisecond), 1},
		{base.Add(1100 * time.Millisecond), 4},
		{base.Add(1250 * time.Millisecond), 5},
		{base.Add(time.Hour), 66},
	} {
		got, err := replay.PositionAt(context.Background(), s, c.t)
		if err != nil || got != c.want {
			t.Errorf("PositionAt(%s) = %d, %v; want %d", c.t.Format(time.RFC3339Nano), got, err, c.want)
		}
	}
	if _, err := replay.PositionAt(context.Background(), s, base); err == nil {
		t.Error("PositionAt(before the first event) succeeded")
	}
}

func TestJobAt(t *testing.T) {
	s := loadRecorded(t)
	codec := command.NewCodec()
	for _, c := range []struct {
		at      uint64
		exists  bool
		status  domain.JobStatus
		attempt uint32
	}{
		{33, false, "", 0},
		{37, true, domain.JobStatusRunning, 1},
		{39, true, domain.JobStatusQueued, 1},
		{66, true, domain.JobStatusSucceeded, 2},
	} {
		job, ok, err := replay.JobAt(context.Background(), s, codec, "j-7", c.at)
		if err != nil || ok != c.exists || job.Status != c.status || job.Attempt != c.attempt {
			t.Errorf("JobAt(j-7, %d) = %s attempt %d, exists %v, %v; want %s attempt %d, exists %v",
				c.at, job.Status, job.Attempt, ok, err, c.status, c.attempt, c.exists)
		}
	}
}

func TestStateAtRebuildsADamagedCacheEntry(t *testing.T) {
	ctx := context.Background()
	s := loadRecorded(t)
	codec := command.NewCodec()
	cache := t.TempDir()
	opts := replay.StateOptions{CacheDir: cache, CacheEvery: 10}
	if _, err := replay.StateAt(ctx, s, codec, 30, opts); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(cache, "00000000000000000020", "jobs.v1.snap")
	b, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(snap, b, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := replay.StateAt(ctx, s, codec, 25, opts)
	if err != nil {
		t.Fatal(err)
	}
	if st.From != 10 || len(st.Cached) != 1 || st.Cached[0] != 20 {
		t.Fatalf("StateAt(25) with a damaged entry at 20: from %d, cached %v; want from 10 and 20 written again", st.From, st.Cached)
	}
	wantJ, wantW := reference(t, s, 25)
	if canonical(t, st.Jobs) != wantJ || canonical(t, st.Workers) != wantW {
		t.Fatal("StateAt(25) differs from a full replay")
	}
}
