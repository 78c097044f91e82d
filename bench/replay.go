package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/eventstore/bolt"
	"github.com/hodei-jobs/hodei/replay"
)

// ReplayConfig configures Replay.
type ReplayConfig struct {
	// Binary is the hodei executable (os.Executable() for `hodei bench`):
	// every measurement is then a fresh `hodei replay ...` process, timed from
	// exec to exit. Empty measures in this process instead, each with a
	// freshly opened store (for tests).
	Binary string
	// Dir is where the data dir is made (default a temp dir, removed after).
	Dir string
	// Events is how many events the log holds (default 1,000,000).
	Events int
	// Runs is how many times verify is timed; the median counts (default 3).
	Runs int
	// Positions are where `state --at` is timed (default six spread over the
	// log, some just below a cache snapshot: the slowest places).
	Positions []uint64
	// CacheEvery is the replay cache's snapshot distance (default
	// replay.DefaultCacheEvery).
	CacheEvery uint64
	// Progress, when set, is told how many events are written so far.
	Progress func(done, total uint64)
}

// ReplayResult is what Replay measured. Times in ms are wall-clock, of the
// whole process in "process" mode (exec, open, work, output, exit); CPU
// times are the child's user+system time, which shows what the work costs
// when the machine is busy with other things.
type ReplayResult struct {
	Events          int     `json:"events"`
	Mode            string  `json:"mode"` // "process" or "in-process"
	GenerateSeconds float64 `json:"generate_seconds"`
	LogBytes        int64   `json:"log_bytes"`
	// VerifyEventsPerSec is events / wall time of the median verify run.
	VerifyEventsPerSec float64   `json:"verify_events_per_sec"`
	VerifyMS           []float64 `json:"verify_ms"`
	VerifyCPUMS        []float64 `json:"verify_cpu_ms,omitempty"`
	// StateAtFirstMS is `state --at <head>` with an empty replay cache: it
	// replays the whole log and leaves a cache snapshot every CacheEvery
	// events on the way.
	StateAtFirstMS float64 `json:"state_at_first_ms"`
	// StateAtMS is the slowest `state --at` of Positions after that.
	StateAtMS  float64      `json:"state_at_ms"`
	StateAt    []StatePoint `json:"state_at"`
	CacheEvery uint64       `json:"cache_every"`
	CacheBytes int64        `json:"cache_bytes"`
	Note       string       `json:"note"`
}

// StatePoint is one timed `state --at`.
type StatePoint struct {
	Position     uint64  `json:"position"`
	MS           float64 `json:"ms"`
	CPUMS        float64 `json:"cpu_ms,omitempty"`
	FromSnapshot uint64  `json:"from_snapshot"`
	Replayed     uint64  `json:"replayed"`
}

// Replay writes a log of cfg.Events events (WriteMixedLog) into a fresh
// data dir, then times `hodei replay verify` on it and `hodei replay state
// --at` at several positions, each from a cold start: a new process (or a
// newly opened store), nothing loaded. The operating system's page cache is
// not dropped (that needs root), so the log is read from memory: the
// figures are CPU-bound, not disk-bound.
func Replay(ctx context.Context, cfg ReplayConfig) (ReplayResult, error) {
	if cfg.Events <= 0 {
		cfg.Events = 1_000_000
	}
	if cfg.Runs <= 0 {
		cfg.Runs = 3
	}
	if cfg.CacheEvery == 0 {
		cfg.CacheEvery = replay.DefaultCacheEvery
	}
	n := uint64(cfg.Events)
	if len(cfg.Positions) == 0 {
		for _, p := range []uint64{n / 10, n / 4, n/2 - 1, 3 * n / 4, 9*n/10 - 1, n} {
			if p >= 1 && !slices.Contains(cfg.Positions, p) {
				cfg.Positions = append(cfg.Positions, p)
			}
		}
	}
	res := ReplayResult{Events: cfg.Events, Mode: "process", CacheEvery: cfg.CacheEvery,
		Note: "page cache not dropped (needs root): the log is read from memory, as on a machine that just wrote it"}
	if cfg.Binary == "" {
		res.Mode = "in-process"
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "hodei-bench-replay-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return res, err
	}
	path := filepath.Join(data, "events.db")
	t0 := time.Now()
	store, err := bolt.Open(path, bolt.Options{NoSync: true})
	if err != nil {
		return res, err
	}
	err = WriteMixedLog(ctx, store, MixedLogConfig{Events: cfg.Events, Progress: cfg.Progress})
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, fmt.Errorf("bench replay: write log: %w", err)
	}
	res.GenerateSeconds = time.Since(t0).Seconds()
	if st, err := os.Stat(path); err == nil {
		res.LogBytes = st.Size()
	}

	r := replayRunner{binary: cfg.Binary, data: data, cacheEvery: cfg.CacheEvery}
	var verify []float64
	for i := 0; i < cfg.Runs; i++ {
		wall, cpu, err := r.verify(ctx, n)
		if err != nil {
			return res, err
		}
		res.VerifyMS = append(res.VerifyMS, ms(wall))
		if cpu > 0 {
			res.VerifyCPUMS = append(res.VerifyCPUMS, ms(cpu))
		}
		verify = append(verify, wall.Seconds())
	}
	slices.Sort(verify)
	res.VerifyEventsPerSec = float64(n) / verify[len(verify)/2]

	first, err := r.state(ctx, n)
	if err != nil {
		return res, err
	}
	res.StateAtFirstMS = first.MS
	for _, p := range cfg.Positions {
		pt, err := r.state(ctx, p)
		if err != nil {
			return res, err
		}
		res.StateAt = append(res.StateAt, pt)
		res.StateAtMS = max(res.StateAtMS, pt.MS)
	}
	_ = filepath.WalkDir(filepath.Join(data, "replay-cache"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				res.CacheBytes += info.Size()
			}
		}
		return nil
	})
	return res, nil
}

// replayRunner runs one measurement, as a process or in this one.
type replayRunner struct {
	binary, data string
	cacheEvery   uint64
}

func (r replayRunner) run(ctx context.Context, out any, args ...string) (wall, cpu time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.binary, args...)
	cmd.Env = append(os.Environ(), "HODEI_POSTGRES=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	wall = time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("bench replay: hodei %v: %v: %s", args, err, stderr.String())
	}
	cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		return 0, 0, fmt.Errorf("bench replay: hodei %v: output: %w", args, err)
	}
	return wall, cpu, nil
}

func (r replayRunner) verify(ctx context.Context, n uint64) (wall, cpu time.Duration, err error) {
	if r.binary != "" {
		var out struct {
			OK     bool   `json:"ok"`
			Events uint64 `json:"events"`
		}
		wall, cpu, err = r.run(ctx, &out, "replay", "verify", "--data", r.data, "-o", "json")
		if err == nil && (!out.OK || out.Events != n) {
			err = fmt.Errorf("bench replay: verify found %d events, ok=%v; want %d, ok", out.Events, out.OK, n)
		}
		return wall, cpu, err
	}
	start := time.Now()
	s, err := bolt.Open(filepath.Join(r.data, "events.db"), bolt.Options{ReadOnly: true})
	if err != nil {
		return 0, 0, err
	}
	defer s.Close()
	rep, err := replay.Verify(ctx, s, nil)
	if err != nil {
		return 0, 0, err
	}
	if !rep.OK() || rep.Events != n {
		return 0, 0, fmt.Errorf("bench replay: verify found %d events, problem %v; want %d, ok", rep.Events, rep.Problem, n)
	}
	return time.Since(start), 0, nil
}

func (r replayRunner) state(ctx context.Context, pos uint64) (StatePoint, error) {
	pt := StatePoint{Position: pos}
	if r.binary != "" {
		var out struct {
			Position     uint64 `json:"position"`
			FromSnapshot uint64 `json:"from_snapshot"`
			Replayed     uint64 `json:"replayed"`
		}
		wall, cpu, err := r.run(ctx, &out, "replay", "state", "--data", r.data, "--at", strconv.FormatUint(pos, 10),
			"--cache-every", strconv.FormatUint(r.cacheEvery, 10), "-o", "json")
		if err != nil {
			return pt, err
		}
		if out.Position != pos {
			return pt, fmt.Errorf("bench replay: state --at %d answered for position %d", pos, out.Position)
		}
		pt.MS, pt.CPUMS, pt.FromSnapshot, pt.Replayed = ms(wall), ms(cpu), out.FromSnapshot, out.Replayed
		return pt, nil
	}
	start := time.Now()
	s, err := bolt.Open(filepath.Join(r.data, "events.db"), bolt.Options{ReadOnly: true})
	if err != nil {
		return pt, err
	}
	defer s.Close()
	st, err := replay.StateAt(ctx, s, command.NewCodec(), pos, replay.StateOptions{
		SnapshotDirs: []string{filepath.Join(r.data, "snapshots")},
		CacheDir:     filepath.Join(r.data, "replay-cache"), CacheEvery: r.cacheEvery})
	if err != nil {
		return pt, err
	}
	pt.MS, pt.FromSnapshot, pt.Replayed = ms(time.Since(start)), st.From, st.Replayed
	return pt, nil
}
