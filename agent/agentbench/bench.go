package agentbench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Server is the server side the bench measures against.
type Server interface {
	// Addr returns the HWP address agents dial.
	Addr() string
	// WaitAgent blocks until an agent with this name is registered.
	WaitAgent(ctx context.Context, name string) error
	// StartJob runs job on the named agent and returns its live log as a
	// server-side subscriber sees it, from the first byte.
	StartJob(ctx context.Context, agentName string, job Job) (Log, error)
}

// Job is a job for the bench to run.
type Job struct {
	ID         string
	Script     string
	WorkingDir string
}

// Log is one running job's log as the server delivers it.
type Log interface {
	// Next blocks until more bytes arrive and returns them with the time the
	// server received them.
	Next(ctx context.Context) (data []byte, at time.Time, err error)
	// Stored returns how many bytes of this log the server has stored.
	Stored() int64
	// Stop cancels the job (if still running) and ends the subscription.
	Stop(ctx context.Context) error
}

// LogLatencyOptions configure LogLatency.
type LogLatencyOptions struct {
	Agent    string        // name of a registered agent to run the jobs
	Samples  int           // probes per phase; default 200
	Flooders int           // jobs flooding output in the second phase; default 4 (negative: skip)
	Interval time.Duration // pause between probes; default 2ms
	// Dir is a directory the agent can read (same host), for the FIFO;
	// default a new temp dir.
	Dir string
	// Prefix makes job ids unique across runs; default derived from the time.
	Prefix string
}

// LogLatencyResult is what `hodei bench logs -o json` prints.
type LogLatencyResult struct {
	P50Ms         float64 `json:"p50_ms"`
	P99Ms         float64 `json:"p99_ms"`
	FloodP50Ms    float64 `json:"flood_p50_ms"`
	FloodP99Ms    float64 `json:"flood_p99_ms"`
	FloodMBPerSec float64 `json:"flood_mb_per_sec"`
	Samples       int     `json:"samples"`
	Flooders      int     `json:"flooders"`
}

// floodScript writes output as fast as the PTY takes it.
const floodScript = `exec yes 'flood 0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789'`

// LogLatency measures PTY write -> server subscriber latency on the named
// agent: Samples probes while idle, then Samples probes while Flooders jobs
// write output as fast as they can, whose stored throughput is reported too.
func LogLatency(ctx context.Context, srv Server, opts LogLatencyOptions) (res LogLatencyResult, err error) {
	if opts.Samples <= 0 {
		opts.Samples = 200
	}
	if opts.Flooders == 0 {
		opts.Flooders = 4
	}
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Millisecond
	}
	if opts.Prefix == "" {
		opts.Prefix = "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "hodei-bench-")
		if err != nil {
			return res, fmt.Errorf("bench logs: %w", err)
		}
		defer os.RemoveAll(d)
		opts.Dir = d
	}
	if err := srv.WaitAgent(ctx, opts.Agent); err != nil {
		return res, fmt.Errorf("bench logs: wait agent: %w", err)
	}
	fifo := filepath.Join(opts.Dir, opts.Prefix+".fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		return res, fmt.Errorf("bench logs: mkfifo: %w", err)
	}
	defer os.Remove(fifo)
	// O_RDWR does not block waiting for a reader (Linux) and keeps cat from
	// seeing EOF between probes.
	w, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		return res, fmt.Errorf("bench logs: open fifo: %w", err)
	}
	defer w.Close()

	probe, err := srv.StartJob(ctx, opts.Agent, Job{ID: opts.Prefix + "-probe", Script: "exec cat " + shellQuote(fifo), WorkingDir: opts.Dir})
	if err != nil {
		return res, fmt.Errorf("bench logs: start probe: %w", err)
	}
	defer func() { _ = probe.Stop(context.WithoutCancel(ctx)) }()
	p := &prober{w: w, log: probe}
	// Warm up: the first probe also waits for the job to start.
	if _, err := p.probe(ctx, "warmup"); err != nil {
		return res, err
	}
	idle, err := p.run(ctx, "i", opts.Samples, opts.Interval)
	if err != nil {
		return res, err
	}
	res.Samples = len(idle)
	res.P50Ms, res.P99Ms = percentileMs(idle, 0.50), percentileMs(idle, 0.99)
	if opts.Flooders < 0 {
		return res, nil
	}

	var floods []Log
	drainCtx, stopDrain := context.WithCancel(ctx)
	var drains sync.WaitGroup
	defer func() {
		for _, f := range floods {
			_ = f.Stop(context.WithoutCancel(ctx))
		}
		stopDrain()
		drains.Wait()
	}()
	for i := range opts.Flooders {
		f, err := srv.StartJob(ctx, opts.Agent, Job{ID: fmt.Sprintf("%s-flood%d", opts.Prefix, i), Script: floodScript, WorkingDir: opts.Dir})
		if err != nil {
			return res, fmt.Errorf("bench logs: start flooder: %w", err)
		}
		floods = append(floods, f)
		drains.Go(func() { drain(drainCtx, f) })
	}
	// Wait until every flooder is producing before measuring.
	for _, f := range floods {
		for f.Stored() == 0 {
			select {
			case <-ctx.Done():
				return res, fmt.Errorf("bench logs: flooders: %w", ctx.Err())
			case <-time.After(time.Millisecond):
			}
		}
	}
	stored0, t0 := storedSum(floods), time.Now()
	flood, err := p.run(ctx, "f", opts.Samples, opts.Interval)
	if err != nil {
		return res, err
	}
	stored1, t1 := storedSum(floods), time.Now()
	res.Flooders = opts.Flooders
	res.FloodP50Ms, res.FloodP99Ms = percentileMs(flood, 0.50), percentileMs(flood, 0.99)
	res.FloodMBPerSec = float64(stored1-stored0) / 1e6 / t1.Sub(t0).Seconds()
	return res, nil
}

// drain reads a flooder's subscription so it never backs up.
func drain(ctx context.Context, l Log) {
	for {
		if _, _, err := l.Next(ctx); err != nil {
			return
		}
	}
}

func storedSum(ls []Log) int64 {
	var n int64
	for _, l := range ls {
		n += l.Stored()
	}
	return n
}

type prober struct {
	w    *os.File
	log  Log
	seen []byte
}

func (p *prober) run(ctx context.Context, tag string, n int, pause time.Duration) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for i := range n {
		d, err := p.probe(ctx, fmt.Sprintf("%s%06d", tag, i))
		if err != nil {
			return nil, err
		}
		out = append(out, d)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("bench logs: %w", ctx.Err())
		case <-time.After(pause):
		}
	}
	return out, nil
}

// probe writes one marker and waits for the server to deliver it.
func (p *prober) probe(ctx context.Context, id string) (time.Duration, error) {
	marker := "<probe " + id + ">"
	t0 := time.Now()
	if _, err := p.w.WriteString(marker + "\n"); err != nil {
		return 0, fmt.Errorf("bench logs: write probe: %w", err)
	}
	for {
		data, at, err := p.log.Next(ctx)
		if err != nil {
			return 0, fmt.Errorf("bench logs: wait for probe %s: %w", id, err)
		}
		p.seen = append(p.seen, data...)
		if i := strings.Index(string(p.seen), marker); i >= 0 {
			p.seen = p.seen[i+len(marker):]
			return at.Sub(t0), nil
		}
		if len(p.seen) > 1<<16 {
			p.seen = p.seen[len(p.seen)-len(marker):]
		}
	}
}

func percentileMs(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	i = min(max(i, 0), len(s)-1)
	return float64(s[i]) / float64(time.Millisecond)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// StartFunc starts one agent registering under name and returns how to stop
// it (stop drains it and waits for it to exit).
type StartFunc func(ctx context.Context, name string) (stop func() error, err error)

// ConnectOptions configure ConnectLatency.
type ConnectOptions struct {
	Runs  int       // default 20
	Start StartFunc // required: e.g. AgentProcess
	// Prefix makes agent names unique; default derived from the time.
	Prefix string
}

// ConnectResult is what `hodei bench connect -o json` prints.
type ConnectResult struct {
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	Runs  int     `json:"runs"`
}

// ConnectLatency starts Runs agents one after another and measures each from
// Start to the server registering it.
func ConnectLatency(ctx context.Context, srv Server, opts ConnectOptions) (ConnectResult, error) {
	var res ConnectResult
	if opts.Start == nil {
		return res, errors.New("bench connect: ConnectOptions.Start is nil")
	}
	if opts.Runs <= 0 {
		opts.Runs = 20
	}
	if opts.Prefix == "" {
		opts.Prefix = "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	var ds []time.Duration
	for i := range opts.Runs {
		name := fmt.Sprintf("%s-agent%d", opts.Prefix, i)
		t0 := time.Now()
		stop, err := opts.Start(ctx, name)
		if err != nil {
			return res, fmt.Errorf("bench connect: start agent: %w", err)
		}
		err = srv.WaitAgent(ctx, name)
		d := time.Since(t0)
		serr := stop()
		if err != nil {
			return res, fmt.Errorf("bench connect: wait agent %s: %w", name, err)
		}
		if serr != nil {
			return res, fmt.Errorf("bench connect: stop agent %s: %w", name, serr)
		}
		ds = append(ds, d)
	}
	res.Runs = len(ds)
	res.P50Ms, res.P99Ms = percentileMs(ds, 0.50), percentileMs(ds, 0.99)
	return res, nil
}

// AgentProcess returns a StartFunc that runs the hodei-agent binary with
// -server addr -name NAME -work-dir (a temp dir) and the extra args. stop
// sends SIGTERM (drain) and waits for the process to exit.
func AgentProcess(binary, addr string, args ...string) StartFunc {
	return func(ctx context.Context, name string) (func() error, error) {
		dir, err := os.MkdirTemp("", "hodei-agent-")
		if err != nil {
			return nil, fmt.Errorf("agent process: %w", err)
		}
		argv := append([]string{"-server", addr, "-name", name, "-work-dir", dir}, args...)
		cmd := exec.Command(binary, argv...)
		cmd.Env = append(os.Environ(), "HODEI_LOG_LEVEL=error")
		if err := cmd.Start(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("agent process: %w", err)
		}
		return func() error {
			defer os.RemoveAll(dir)
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					return fmt.Errorf("agent process %s: %w", name, err)
				}
				return nil
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				return fmt.Errorf("agent process %s: did not exit after SIGTERM", name)
			}
		}, nil
	}
}
