package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/hodei-jobs/hodei/api/jobpb"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/internal/syncbuf"
	"github.com/hodei-jobs/hodei/provider"
	"github.com/hodei-jobs/hodei/provider/docker"
)

func init() { register("bench", newBenchProvisionCmd) }

func newBenchProvisionCmd() *cobra.Command {
	var (
		output, image string
		runs          int
		timeout       time.Duration
	)
	c := &cobra.Command{
		Use:   "provision",
		Short: "Time a cold job: from submit to its first log byte with no agent running (Docker provider)",
		Long: `Measure the cold path of the Docker provider.

It runs this hodei binary as ` + "`hodei server`" + ` (a child process with its own
temporary data dir, default TLS and one-time join tokens, listening on
0.0.0.0 at a free port) with one Docker provider: ephemeral agents of
--image, at most one, dialling the server at the gateway of Docker's default
bridge network. Then, --runs times one after another, with no agent or
container running, it submits a job (echo first; sleep 0.1) over the
JobService and times from the Submit call to the first byte of its log
arriving on WatchLog; it waits for the job to end and its container to be
removed before the next run.

-o json prints p50_ms, p99_ms, min_ms, max_ms, mean_ms and runs, and the
means of the parts of a cold start, from the event log: request_ms (submit
to instance.requested), container_start_ms (docker create and start),
agent_connect_ms (container started to worker.registered: agent process,
TLS, enrolment, registration), place_ms (registered to job.started) and
first_byte_ms (job.started to the first byte at the client).

The image must be in the local engine: ` + "`make image`" + ` builds hodei-agent:dev.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if runs < 1 || runs > 1000 {
				return usageError("--runs %d: want 1..1000", runs)
			}
			if timeout <= 0 {
				return usageError("--timeout %s: want a positive duration", timeout)
			}
			if image == "" {
				return usageError("--image is empty")
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			res, err := runBenchProvision(ctx, self, image, runs, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cold submit to first log byte: p50 %.1f ms, p99 %.1f ms, min %.1f ms, max %.1f ms (%d runs)\n",
				res.P50Ms, res.P99Ms, res.MinMs, res.MaxMs, res.Runs)
			fmt.Fprintf(cmd.OutOrStdout(), "mean parts: request %.1f ms, container start %.1f ms, agent connect %.1f ms, place %.1f ms, first byte %.1f ms\n",
				res.RequestMs, res.ContainerStartMs, res.AgentConnectMs, res.PlaceMs, res.FirstByteMs)
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&image, "image", "hodei-agent:dev", "agent image the provider runs (must be in the local engine)")
	fl.IntVar(&runs, "runs", 20, "cold jobs, one after another")
	fl.DurationVar(&timeout, "timeout", 5*time.Minute, "time limit of the whole bench")
	addOutputFlag(c, &output)
	return c
}

// provisionResult is what `hodei bench provision -o json` prints.
type provisionResult struct {
	Runs   int     `json:"runs"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MinMs  float64 `json:"min_ms"`
	MaxMs  float64 `json:"max_ms"`
	MeanMs float64 `json:"mean_ms"`
	// Means of the parts, from the server's event times.
	RequestMs        float64 `json:"request_ms"`
	ContainerStartMs float64 `json:"container_start_ms"`
	AgentConnectMs   float64 `json:"agent_connect_ms"`
	PlaceMs          float64 `json:"place_ms"`
	FirstByteMs      float64 `json:"first_byte_ms"`
	Image            string  `json:"image"`
}

// provisionRun is one cold job's timings.
type provisionRun struct {
	total                                          time.Duration
	request, start, connect, place, firstByteAfter time.Duration
}

// runBenchProvision runs the bench server and the cold jobs.
func runBenchProvision(ctx context.Context, self, image string, runs int, stderr io.Writer) (res provisionResult, err error) {
	drv, err := docker.New(docker.Config{})
	if err != nil {
		return res, err
	}
	defer drv.Close()
	if err := drv.Ping(ctx); err != nil {
		return res, fmt.Errorf("bench provision needs a Docker engine: %w", err)
	}
	if err := drv.CheckImage(ctx, image); errors.Is(err, provider.ErrImage) {
		return res, fmt.Errorf("--image %s is not in the local engine: build it with `make image`", image)
	} else if err != nil {
		return res, err
	}
	gw, err := drv.Gateway(ctx, "bridge")
	if err != nil {
		return res, err
	}

	dir, err := os.MkdirTemp("", "hodei-bench-provision-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return res, err
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	owner := "bench-" + hex.EncodeToString(b)
	if err := os.WriteFile(filepath.Join(data, provider.OwnerFile), []byte(owner+"\n"), 0o600); err != nil {
		return res, err
	}
	defer func() {
		// Nothing of ours stays on the engine, whatever happened.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if _, rerr := drv.RemoveAll(ctx, owner); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	port, err := freePort()
	if err != nil {
		return res, err
	}
	providers, err := json.Marshal(map[string]any{"providers": []any{map[string]any{
		"name": "bench", "driver": "docker", "image": image, "max": 1, "ephemeral": true,
		"start_timeout": "1m", "server_address": net.JoinHostPort(gw.String(), strconv.Itoa(port)),
	}}})
	if err != nil {
		return res, err
	}
	provFile := filepath.Join(dir, "providers.json")
	if err := os.WriteFile(provFile, providers, 0o600); err != nil {
		return res, err
	}

	srv, err := startProvisionServer(ctx, self, data, port, provFile)
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := srv.stop(); serr != nil {
			err = errors.Join(err, serr)
		}
		if err != nil {
			fmt.Fprintf(stderr, "bench server log:\n%s", srv.log.String())
		}
	}()

	conn, err := dialDataDir(data, "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return res, err
	}
	defer conn.Close()
	api := jobpb.NewJobServiceClient(conn)
	ev, err := watchProvisionEvents(ctx, api)
	if err != nil {
		return res, err
	}
	defer ev.close()

	var all []provisionRun
	for i := range runs {
		if err := waitNoContainers(ctx, drv, owner); err != nil {
			return res, err
		}
		r, err := provisionOnce(ctx, api, ev, i)
		if err != nil {
			return res, fmt.Errorf("run %d: %w", i+1, err)
		}
		all = append(all, r)
	}
	if err := waitNoContainers(ctx, drv, owner); err != nil {
		return res, err
	}
	return summarizeProvision(all, image), nil
}

// summarizeProvision computes the result of the runs.
func summarizeProvision(all []provisionRun, image string) provisionResult {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	mean := func(f func(provisionRun) time.Duration) float64 {
		var sum time.Duration
		for _, r := range all {
			sum += f(r)
		}
		return ms(sum / time.Duration(len(all)))
	}
	totals := make([]time.Duration, len(all))
	for i, r := range all {
		totals[i] = r.total
	}
	slices.Sort(totals)
	pct := func(q float64) float64 {
		i := int(q*float64(len(totals))+0.5) - 1
		return ms(totals[min(max(i, 0), len(totals)-1)])
	}
	return provisionResult{Runs: len(all), P50Ms: pct(0.5), P99Ms: pct(0.99), MinMs: ms(totals[0]), MaxMs: ms(totals[len(totals)-1]),
		MeanMs:           mean(func(r provisionRun) time.Duration { return r.total }),
		RequestMs:        mean(func(r provisionRun) time.Duration { return r.request }),
		ContainerStartMs: mean(func(r provisionRun) time.Duration { return r.start }),
		AgentConnectMs:   mean(func(r provisionRun) time.Duration { return r.connect }),
		PlaceMs:          mean(func(r provisionRun) time.Duration { return r.place }),
		FirstByteMs:      mean(func(r provisionRun) time.Duration { return r.firstByteAfter }),
		Image:            image}
}

// provisionOnce submits one job with nothing running and times it.
func provisionOnce(ctx context.Context, api jobpb.JobServiceClient, ev *provisionEvents, i int) (provisionRun, error) {
	var r provisionRun
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	sub, err := api.SubmitJobs(ctx, &jobpb.SubmitJobsRequest{Jobs: []*jobpb.SubmitJob{{Spec: &jobpb.JobSpec{
		Name: fmt.Sprintf("bench-provision-%d", i+1), Script: "echo first; sleep 0.1", MaxAttempts: 1}}}})
	if err != nil {
		return r, fmt.Errorf("submit: %w", err)
	}
	id := sub.GetResults()[0].GetJob().GetId()
	stream, err := api.WatchLog(ctx, &jobpb.WatchLogRequest{JobId: id, Follow: true})
	if err != nil {
		return r, fmt.Errorf("watch log of %s: %w", id, err)
	}
	var first time.Time
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return r, fmt.Errorf("watch log of %s: %w", id, err)
		}
		if first.IsZero() && len(c.GetData()) > 0 {
			first = time.Now()
			r.total = first.Sub(t0)
		}
	}
	if first.IsZero() {
		return r, fmt.Errorf("job %s ended with no output", id)
	}
	end := ev.wait(ctx, func(e provisionEvent) bool { return e.stream == domain.JobStream(id) && e.terminal })
	if end == nil {
		return r, fmt.Errorf("job %s: no terminal event: %w", id, ctx.Err())
	}
	if end.typ != domain.TypeJobSucceeded {
		return r, fmt.Errorf("job %s ended with %s", id, end.typ)
	}
	// The parts: these events precede the job's end or follow it closely.
	ctx, cancelParts := context.WithTimeout(ctx, 30*time.Second)
	defer cancelParts()
	req := ev.wait(ctx, func(e provisionEvent) bool {
		return e.typ == domain.TypeInstanceRequested && slices.Contains(e.Jobs, id)
	})
	if req == nil {
		return r, fmt.Errorf("job %s: no instance.requested for it: %w", id, ctx.Err())
	}
	inst := req.InstanceID
	started := ev.wait(ctx, func(e provisionEvent) bool {
		return e.typ == domain.TypeInstanceStarted && e.InstanceID == inst
	})
	reg := ev.wait(ctx, func(e provisionEvent) bool {
		return e.typ == domain.TypeWorkerRegistered && e.Info.Labels[provider.AgentLabelInstance] == inst
	})
	jobStarted := ev.wait(ctx, func(e provisionEvent) bool {
		return e.typ == domain.TypeJobStarted && e.stream == domain.JobStream(id)
	})
	// The instance is settled (removed and recorded) before the next run,
	// so the provider is at zero again.
	term := ev.wait(ctx, func(e provisionEvent) bool {
		return (e.typ == domain.TypeInstanceTerminated || e.typ == domain.TypeInstanceFailed) && e.InstanceID == inst
	})
	for what, e := range map[string]*provisionEvent{"instance.started": started, "worker.registered": reg,
		"job.started": jobStarted, "instance.terminated": term} {
		if e == nil {
			return r, fmt.Errorf("job %s on instance %s: no %s in the event log: %w", id, inst, what, ctx.Err())
		}
	}
	r.request = req.At.Sub(t0)
	r.start = started.At.Sub(req.At)
	r.connect = reg.time.Sub(started.At)
	r.place = jobStarted.time.Sub(reg.time)
	r.firstByteAfter = first.Sub(jobStarted.time)
	return r, nil
}

// waitNoContainers waits until owner has no container on the engine.
func waitNoContainers(ctx context.Context, drv *docker.Driver, owner string) error {
	for {
		got, err := drv.List(ctx, owner)
		if err != nil {
			return err
		}
		if len(got) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d container(s) still running: %w", len(got), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// freePort returns a TCP port free on every address right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// provisionServer is the bench's `hodei server` child process.
type provisionServer struct {
	cmd    *exec.Cmd
	log    *syncbuf.Buffer
	exited chan struct{}
	err    error
}

// startProvisionServer runs `self server` with TLS (the data dir's own CA)
// and managed join tokens on 0.0.0.0:port and returns once it listens.
func startProvisionServer(ctx context.Context, self, data string, port int, providers string) (*provisionServer, error) {
	cmd := exec.Command(self, "server", "--data", data, "--listen", "0.0.0.0:"+strconv.Itoa(port),
		"--http", "127.0.0.1:0", "--providers", providers, "--log-level", "info", "--shutdown-grace", "2s")
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "HODEI_") })
	s := &provisionServer{cmd: cmd, log: &syncbuf.Buffer{}, exited: make(chan struct{})}
	cmd.Stderr = s.log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start hodei server: %w", err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		once := sync.Once{}
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "hodei server listening") {
				once.Do(func() { close(ready) })
			}
		}
		s.err = cmd.Wait()
		close(s.exited)
	}()
	select {
	case <-ready:
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("hodei server exited at start (%v):\n%s", s.err, s.log.String())
	case <-ctx.Done():
		_ = s.stop()
		return nil, fmt.Errorf("hodei server not listening: %w\n%s", ctx.Err(), s.log.String())
	}
}

// stop ends the server with SIGTERM (SIGKILL after 15s) and waits for it.
func (s *provisionServer) stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return errors.New("hodei server did not stop within 15s of SIGTERM")
	}
	if s.err != nil {
		return fmt.Errorf("hodei server: %w", s.err)
	}
	return nil
}

// dialDataDir connects to the JobService at addr over TLS, trusting the
// data dir's CA and sending its admin token.
func dialDataDir(data, addr string) (*grpc.ClientConn, error) {
	ca, err := os.ReadFile(filepath.Join(data, "ca.pem"))
	if err != nil {
		return nil, fmt.Errorf("server CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("server CA: no PEM certificate in ca.pem")
	}
	tok, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool})
	return grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(bearerToken{token: strings.TrimSpace(string(tok)), secure: true}))
}

// provisionEvent is an event the bench reads, with the payload fields it
// needs.
type provisionEvent struct {
	position uint64
	stream   string
	typ      string
	time     time.Time
	terminal bool

	InstanceID string            `json:"instance_id"`
	Jobs       []string          `json:"jobs"`
	At         time.Time         `json:"at"`
	Info       domain.WorkerInfo `json:"info"`
}

// provisionEvents follows the server's event log.
type provisionEvents struct {
	mu     sync.Mutex
	seen   []provisionEvent
	more   chan struct{} // closed and replaced when seen grows or the stream ends
	err    error
	cancel context.CancelFunc
	done   chan struct{}
}

var provisionTypes = []string{domain.TypeInstanceRequested, domain.TypeInstanceStarted, domain.TypeInstanceTerminated,
	domain.TypeInstanceFailed, domain.TypeWorkerRegistered, domain.TypeJobStarted, domain.TypeJobSucceeded,
	domain.TypeJobFailed, domain.TypeJobCancelled, domain.TypeJobTimedOut}

func watchProvisionEvents(ctx context.Context, api jobpb.JobServiceClient) (*provisionEvents, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := api.WatchEvents(ctx, &jobpb.WatchEventsRequest{FromPosition: 1, Types: provisionTypes})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch events: %w", err)
	}
	w := &provisionEvents{more: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			e, err := stream.Recv()
			w.mu.Lock()
			if err != nil {
				w.err = err
			} else {
				pe := provisionEvent{position: e.GetPosition(), stream: e.GetStream(), typ: e.GetType(), time: e.GetTime().AsTime()}
				switch pe.typ {
				case domain.TypeJobSucceeded, domain.TypeJobFailed, domain.TypeJobCancelled, domain.TypeJobTimedOut:
					pe.terminal = true
				}
				if jerr := json.Unmarshal([]byte(e.GetPayloadJson()), &pe); jerr != nil {
					w.err = fmt.Errorf("event %d payload: %w", pe.position, jerr)
				}
				w.seen = append(w.seen, pe)
			}
			close(w.more)
			w.more = make(chan struct{})
			stop := w.err != nil
			w.mu.Unlock()
			if stop {
				return
			}
		}
	}()
	return w, nil
}

// wait returns the first event match accepts, or nil when ctx ends or the
// stream does first.
func (w *provisionEvents) wait(ctx context.Context, match func(provisionEvent) bool) *provisionEvent {
	next := 0
	for {
		w.mu.Lock()
		seen, more, err := w.seen[next:], w.more, w.err
		next = len(w.seen)
		w.mu.Unlock()
		for i := range seen {
			if match(seen[i]) {
				return &seen[i]
			}
		}
		if err != nil {
			return nil
		}
		select {
		case <-more:
		case <-ctx.Done():
			return nil
		}
	}
}

func (w *provisionEvents) close() {
	w.cancel()
	<-w.done
}
