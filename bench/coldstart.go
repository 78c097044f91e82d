package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore/bolt"
)

// ColdStartConfig configures ColdStart.
type ColdStartConfig struct {
	// Binary is the hodei executable to start (os.Executable() for `hodei bench`).
	Binary string
	// Dir is where the data dir is made (default a temp dir, removed after).
	Dir string
	// Events is how many events the log holds before the starts (default 1,000,000).
	Events int
	// Starts is how many warm starts are timed (default 5).
	Starts int
	// Progress, when set, is told how many events are written so far.
	Progress func(done, total uint64)
}

// ColdStartResult is what ColdStart measured. Times are from starting the
// process to the server reporting that it listens with its read models loaded.
type ColdStartResult struct {
	Events int `json:"events"`
	// ReadyMS is the median start time with the snapshots the server writes
	// when it stops: a restart of a server that ran before.
	ReadyMS float64 `json:"ready_ms"`
	// ReadyMaxMS is the slowest of those starts.
	ReadyMaxMS float64 `json:"ready_max_ms"`
	// FirstStartMS is the first start, with no snapshot: every event replayed.
	FirstStartMS float64 `json:"first_start_ms"`
	// GenerateSeconds is how long writing the log took.
	GenerateSeconds float64 `json:"generate_seconds"`
}

// ColdStart writes a realistic log (workers registering, jobs submitted,
// scheduled, accepted, started and finished) into a fresh data dir, then
// times server starts on it: one without snapshots, then several with the
// snapshots the server wrote on its way out.
func ColdStart(ctx context.Context, cfg ColdStartConfig) (ColdStartResult, error) {
	if cfg.Events <= 0 {
		cfg.Events = 1_000_000
	}
	if cfg.Starts <= 0 {
		cfg.Starts = 5
	}
	res := ColdStartResult{Events: cfg.Events}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "hodei-coldstart-")
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
	t0 := time.Now()
	if err := writeLifecycleLog(ctx, filepath.Join(data, "events.db"), cfg.Events, cfg.Progress); err != nil {
		return res, err
	}
	res.GenerateSeconds = time.Since(t0).Seconds()

	first, err := timeStart(ctx, cfg.Binary, data)
	if err != nil {
		return res, fmt.Errorf("first start: %w", err)
	}
	res.FirstStartMS = ms(first)
	var times []time.Duration
	for i := 0; i < cfg.Starts; i++ {
		d, err := timeStart(ctx, cfg.Binary, data)
		if err != nil {
			return res, fmt.Errorf("start %d: %w", i+2, err)
		}
		times = append(times, d)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	res.ReadyMS, res.ReadyMaxMS = ms(times[len(times)/2]), ms(times[len(times)-1])
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// timeStart starts `hodei server` on data, waits for its "listening" line,
// then stops it with SIGTERM (it writes snapshots on the way out) and waits.
func timeStart(ctx context.Context, binary, data string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "server", "--data", data, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--log-level", "warn")
	cmd.Env = append(os.Environ(), "HODEI_POSTGRES=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	ready := make(chan time.Duration, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening") {
				ready <- time.Since(start)
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		close(ready)
	}()
	d, ok := <-ready
	_ = cmd.Process.Signal(syscall.SIGTERM)
	werr := cmd.Wait()
	if !ok {
		return 0, fmt.Errorf("server exited before it listened: %v: %s", werr, stderr.String())
	}
	if werr != nil {
		var ee *exec.ExitError
		if !errors.As(werr, &ee) {
			return 0, werr
		}
		return 0, fmt.Errorf("server stopped with %v: %s", werr, stderr.String())
	}
	return d, nil
}

// writeLifecycleLog fills a bbolt log with about n events of a realistic
// mix: 100 workers register, then jobs go through submit, schedule, accept,
// start and finish (one in ten fails), in batches as the server writes them.
func writeLifecycleLog(ctx context.Context, path string, n int, progress func(done, total uint64)) error {
	store, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	h := command.New(store, command.NewCodec(), command.Options{CacheSize: 4096})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	meta := command.Meta{Actor: "system:bench"}
	const workers = 100
	for w := 0; w < workers; w++ {
		id := fmt.Sprintf("w%03d", w)
		info := domain.WorkerInfo{Name: id, Labels: map[string]string{"os": "linux", "pool": fmt.Sprintf("p%d", w%4)},
			Capacity: domain.Resources{Slots: 8, CPUMillis: 8000, MemoryBytes: 16 << 30}, AgentVersion: "bench", ProtocolVersion: 1}
		if _, err := h.Worker(ctx, id, domain.Register{WorkerID: id, Info: info, At: at}, meta); err != nil {
			return err
		}
	}
	written := workers
	const batch = 400 // jobs per round
	for job := 0; written < n; job += batch {
		var steps [5][]command.JobCommand
		for k := 0; k < batch; k++ {
			id := fmt.Sprintf("job-%08d", job+k)
			w := fmt.Sprintf("w%03d", (job+k)%workers)
			at = at.Add(time.Millisecond)
			steps[0] = append(steps[0], command.JobCommand{JobID: id, Meta: meta, Cmd: domain.Submit{JobID: id, Submitter: "bench", At: at,
				Spec: domain.JobSpec{Name: "build", Script: "make test", Env: map[string]string{"CI": "true"}, Labels: map[string]string{"team": "core"}}}})
			steps[1] = append(steps[1], command.JobCommand{JobID: id, Meta: meta, Cmd: domain.Schedule{WorkerID: w, At: at}})
			steps[2] = append(steps[2], command.JobCommand{JobID: id, Meta: meta, Cmd: domain.Accept{WorkerID: w, Attempt: 1, At: at}})
			steps[3] = append(steps[3], command.JobCommand{JobID: id, Meta: meta, Cmd: domain.Start{WorkerID: w, Attempt: 1, At: at}})
			exit := 0
			if (job+k)%10 == 9 {
				exit = 1
			}
			steps[4] = append(steps[4], command.JobCommand{JobID: id, Meta: meta, Cmd: domain.Finish{WorkerID: w, Attempt: 1, ExitCode: exit, Runtime: time.Second, At: at}})
		}
		for _, s := range steps {
			if errs := h.RunJobs(ctx, s); firstErr(errs) != nil {
				return fmt.Errorf("write log: %w", firstErr(errs))
			}
			written += len(s)
		}
		if progress != nil {
			progress(uint64(min(written, n)), uint64(n))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
