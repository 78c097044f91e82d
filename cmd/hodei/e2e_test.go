package main

// End-to-end tests with real processes: `hodei server` and `hodei-agent`
// built from this tree, run as child processes on loopback port 0, driven
// with the `hodei` CLI and watched through the JobService's WatchEvents and
// WatchLog over gRPC. They wait on notifications only: the server's stdout,
// the event stream, log streams, a pidfd for a process the test did not
// start.

import (
	"bytes"
	"context"
	"encoding/json"
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
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hodei-jobs/hodei/api/jobpb"
	"github.com/hodei-jobs/hodei/domain"
)

// e2eHeartbeat is the server's --heartbeat in these tests: a worker silent
// for three of them is lost.
const e2eHeartbeat = 200 * time.Millisecond

// e2eLostBound is how long after an agent dies or freezes the server must
// have recorded worker.lost and job.requeued: three heartbeat intervals
// plus slack for a loaded machine.
const e2eLostBound = 3*e2eHeartbeat + 2*time.Second

// e2eWait bounds each wait for something the test expects to happen.
const e2eWait = 30 * time.Second

// e2eBins are the binaries, built once per test binary (removed by TestMain).
var e2eBins struct {
	once         sync.Once
	dir          string
	hodei, agent string
	err          error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if e2eBins.dir != "" {
		_ = os.RemoveAll(e2eBins.dir)
	}
	os.Exit(code)
}

// e2eBinaries builds hodei and hodei-agent (once) and returns their paths.
// It skips the test under -short.
func e2eBinaries(t *testing.T) (hodei, agent string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds hodei and hodei-agent and runs them as processes; skipped with -short")
	}
	e2eBins.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			e2eBins.err = fmt.Errorf("find the go command: %w", err)
			return
		}
		if e2eBins.dir, err = os.MkdirTemp("", "hodei-e2e-bin-"); err != nil {
			e2eBins.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		for _, name := range []string{"hodei", "hodei-agent"} {
			out := filepath.Join(e2eBins.dir, name)
			cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, "github.com/hodei-jobs/hodei/cmd/"+name)
			if b, err := cmd.CombinedOutput(); err != nil {
				e2eBins.err = fmt.Errorf("go build %s: %v\n%s", name, err, b)
				return
			}
		}
		e2eBins.hodei, e2eBins.agent = filepath.Join(e2eBins.dir, "hodei"), filepath.Join(e2eBins.dir, "hodei-agent")
	})
	if e2eBins.err != nil {
		t.Fatal(e2eBins.err)
	}
	return e2eBins.hodei, e2eBins.agent
}

// e2eJoinToken is the static join token the test server requires.
const e2eJoinToken = "e2e-join-secret"

// e2eEnv is this environment without HODEI_* variables, which would
// configure the children behind the test's back, plus loopback-only
// settings: plaintext gRPC and an API open to anonymous callers (for the
// server, the agents and the CLI alike; a binary without these settings
// ignores them). TLS and API tokens are not what these tests are about.
func e2eEnv() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "HODEI_") })
	return append(env, "HODEI_INSECURE_PLAINTEXT=true", "HODEI_INSECURE_ANONYMOUS=true")
}

// e2eOutput collects a child's output and signals every write, so a test
// can wait for a line without polling.
type e2eOutput struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{} // capacity 1: a pending "something was written"
}

func newE2EOutput() *e2eOutput { return &e2eOutput{wrote: make(chan struct{}, 1)} }

func (o *e2eOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	n, err := o.b.Write(p)
	o.mu.Unlock()
	select {
	case o.wrote <- struct{}{}:
	default:
	}
	return n, err
}

func (o *e2eOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// waitFor returns the output once ok accepts it, or fails after e2eWait or
// when exited is closed first.
func (o *e2eOutput) waitFor(t *testing.T, what string, exited <-chan struct{}, ok func(string) bool) string {
	t.Helper()
	timer := time.NewTimer(e2eWait)
	defer timer.Stop()
	for {
		if s := o.String(); ok(s) {
			return s
		}
		select {
		case <-o.wrote:
		case <-exited:
			if s := o.String(); ok(s) {
				return s
			}
			t.Fatalf("process exited before %s; output:\n%s", what, o.String())
		case <-timer.C:
			t.Fatalf("no %s within %s; output:\n%s", what, e2eWait, o.String())
		}
	}
}

// e2eProc is a child process the test waits for.
type e2eProc struct {
	name   string
	cmd    *exec.Cmd
	stdout *e2eOutput
	stderr *e2eOutput
	exited chan struct{} // closed when Wait returned
	err    error         // Wait's result, after exited
}

// startE2EProc starts bin with args. Cleanup kills it (after SIGCONT, in
// case it is stopped) unless it has exited, waits for it and shows its
// stderr when the test failed.
func startE2EProc(t *testing.T, name, bin string, args ...string) *e2eProc {
	t.Helper()
	p := &e2eProc{name: name, cmd: exec.Command(bin, args...), stdout: newE2EOutput(), stderr: newE2EOutput(),
		exited: make(chan struct{})}
	p.cmd.Env = e2eEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, p.stderr.String())
		}
	})
	return p
}

// signal sends sig to the process.
func (p *e2eProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s %v: %v", p.name, sig, err)
	}
}

// e2eServer is a `hodei server` process.
type e2eServer struct {
	*e2eProc
	grpc, http string
}

// startE2EServer runs `hodei server` with a bbolt store in a temp dir on
// port 0, requiring e2eJoinToken from agents, and returns once it prints its addresses. Cleanup stops it with
// SIGTERM (a clean shutdown) and checks that it exits 0. extra flags are
// appended to the command line (a repeated flag overrides the default).
func startE2EServer(t *testing.T, bin string, extra ...string) *e2eServer {
	t.Helper()
	p := startE2EProc(t, "hodei server", bin, append([]string{"server", "--data", t.TempDir(), "--listen", "127.0.0.1:0",
		"--http", "127.0.0.1:0", "--insecure-plaintext", "--insecure-anonymous", "--join-token", e2eJoinToken, "--heartbeat", e2eHeartbeat.String(), "--shutdown-grace", "2s", "--log-level", "info"}, extra...)...)
	const prefix = "hodei server listening: grpc "
	out := p.stdout.waitFor(t, "listening line", p.exited, func(s string) bool {
		i := strings.Index(s, prefix)
		return i >= 0 && strings.Contains(s[i:], "\n")
	})
	line := out[strings.Index(out, prefix)+len(prefix):]
	line = line[:strings.IndexByte(line, '\n')]
	grpcAddr, httpAddr, ok := strings.Cut(line, ", http ")
	if !ok {
		t.Fatalf("cannot parse the listening line %q", line)
	}
	s := &e2eServer{e2eProc: p, grpc: grpcAddr, http: httpAddr}
	// Registered after startE2EProc's cleanup, so it runs first.
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(e2eWait)
		defer timer.Stop()
		select {
		case <-p.exited:
			if p.err != nil {
				t.Errorf("hodei server stopped with %v", p.err)
			}
		case <-timer.C:
			t.Errorf("hodei server still running %s after SIGTERM", e2eWait)
		}
	})
	return s
}

// startE2EAgent runs a hodei-agent process named name against srv.
func startE2EAgent(t *testing.T, bin string, srv *e2eServer, name string) *e2eProc {
	t.Helper()
	return startE2EProc(t, "hodei-agent "+name, bin, "-server", srv.grpc, "-insecure-plaintext", "-token", e2eJoinToken, "-name", name, "-slots", "1",
		"-work-dir", t.TempDir(), "-cancel-grace", "1s", "-log-level", "info")
}

// hodeiCLI runs the hodei binary with args against srv and returns stdout.
func hodeiCLI(t *testing.T, bin string, srv *e2eServer, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "--server", srv.grpc, "--insecure-plaintext")...)
	cmd.Env = e2eEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("hodei %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// e2eEvent is an event from WatchEvents with the payload fields the tests
// look at.
type e2eEvent struct {
	*jobpb.Event
	e2ePayload
}

// e2ePayload holds the payload fields of job and worker events.
type e2ePayload struct {
	JobID    string            `json:"job_id"`
	Attempt  uint32            `json:"attempt"`
	WorkerID string            `json:"worker_id"`
	Info     domain.WorkerInfo `json:"info"`
}

// e2eEvents follows the server's whole event log (WatchEvents from
// position 1) and keeps every event for the tests to search.
type e2eEvents struct {
	mu     sync.Mutex
	seen   []e2eEvent
	more   chan struct{} // closed and replaced when seen grows or the stream ends
	err    error         // why the stream ended
	client jobpb.JobServiceClient
}

// watchE2EEvents opens a gRPC client to srv and follows its events until the
// test ends.
func watchE2EEvents(t *testing.T, srv *e2eServer) *e2eEvents {
	t.Helper()
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &e2eEvents{more: make(chan struct{}), client: jobpb.NewJobServiceClient(conn)}
	stream, err := w.client.WatchEvents(ctx, &jobpb.WatchEventsRequest{FromPosition: 1})
	if err != nil {
		cancel()
		conn.Close()
		t.Fatalf("WatchEvents() = %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			e, err := stream.Recv()
			w.mu.Lock()
			if err != nil {
				w.err = err
			} else {
				ev := e2eEvent{Event: e}
				if jerr := json.Unmarshal([]byte(e.GetPayloadJson()), &ev.e2ePayload); jerr != nil {
					w.err = fmt.Errorf("event %d payload: %w", e.GetPosition(), jerr)
				}
				w.seen = append(w.seen, ev)
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
	// Registered last, so it runs before the server's cleanup.
	t.Cleanup(func() {
		cancel()
		<-done
		conn.Close()
	})
	return w
}

// wait returns the first event (from the start of the log) of type typ that
// match accepts, waiting up to e2eWait for it.
func (w *e2eEvents) wait(t *testing.T, typ string, match func(e2eEvent) bool) e2eEvent {
	t.Helper()
	timer := time.NewTimer(e2eWait)
	defer timer.Stop()
	next := 0
	for {
		w.mu.Lock()
		seen, more, err := w.seen[next:], w.more, w.err
		next = len(w.seen)
		w.mu.Unlock()
		for _, e := range seen {
			if e.GetType() == typ && (match == nil || match(e)) {
				return e
			}
		}
		if err != nil {
			t.Fatalf("event stream ended waiting for %s: %v", typ, err)
		}
		select {
		case <-more:
		case <-timer.C:
			t.Fatalf("no matching %s within %s; events:\n%s", typ, e2eWait, w.dump())
		}
	}
}

// registered waits for the agent named name to register and returns its
// worker id.
func (w *e2eEvents) registered(t *testing.T, name string) string {
	t.Helper()
	return w.wait(t, domain.TypeWorkerRegistered, func(e e2eEvent) bool { return e.Info.Name == name }).WorkerID
}

// ofJob waits for event typ of job id's attempt.
func (w *e2eEvents) ofJob(t *testing.T, typ, id string, attempt uint32) e2eEvent {
	t.Helper()
	return w.wait(t, typ, func(e e2eEvent) bool { return e.JobID == id && e.Attempt == attempt })
}

// all returns the events seen so far.
func (w *e2eEvents) all() []e2eEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seen)
}

func (w *e2eEvents) dump() string {
	var b strings.Builder
	for _, e := range w.all() {
		fmt.Fprintf(&b, "  %d %s %s %s %s\n", e.GetPosition(), e.GetTime().AsTime().Format("15:04:05.000"), e.GetType(), e.GetStream(), e.GetActor())
	}
	return b.String()
}

// waitLog follows job id's attempt until its log contains want and returns
// what it read.
func (w *e2eEvents) waitLog(t *testing.T, id string, attempt uint32, want string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	stream, err := w.client.WatchLog(ctx, &jobpb.WatchLogRequest{JobId: id, Attempt: attempt, Follow: true})
	if err != nil {
		t.Fatalf("WatchLog(%s, %d) = %v", id, attempt, err)
	}
	var got []byte
	for !bytes.Contains(got, []byte(want)) {
		c, err := stream.Recv()
		if err != nil {
			t.Fatalf("log of %s attempt %d has no %q (%v); got %q", id, attempt, want, err, got)
		}
		got = append(got, c.GetData()...)
	}
	return string(got)
}

// submitE2EJob submits script with `hodei job submit -o json` and returns
// the job id.
func submitE2EJob(t *testing.T, bin string, srv *e2eServer, name, script string) string {
	t.Helper()
	out := hodeiCLI(t, bin, srv, "job", "submit", "-o", "json", "--name", name, "--attempts", "3", "-c", script)
	var res struct {
		Job struct {
			ID string `json:"id"`
		} `json:"job"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Job.ID == "" {
		t.Fatalf("hodei job submit -o json printed %q: %v", out, err)
	}
	return res.Job.ID
}

// e2eScriptDir is where a job's script leaves its pids and finds its
// go-ahead marker. Cleanup kills the process group of every pid left there,
// for jobs whose agent was killed under them.
func e2eScriptDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		for attempt := 1; attempt <= 3; attempt++ {
			if pid := e2ePid(dir, uint32(attempt)); pid > 0 {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
	})
	return dir
}

// e2ePid returns the pid an attempt's script wrote, or 0.
func e2ePid(dir string, attempt uint32) int {
	b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("pid-%d", attempt)))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// sinceKill is how long after t0 the server recorded e.
func sinceKill(e e2eEvent, t0 time.Time) time.Duration { return e.GetTime().AsTime().Sub(t0) }

// TestE2EKilledAgentsJobIsRequeued kills an agent (SIGKILL) under a running
// job: the server marks the worker lost and re-queues the attempt within
// three heartbeat intervals, and a second agent runs attempt 2 to success.
func TestE2EKilledAgentsJobIsRequeued(t *testing.T) {
	hodei, agentBin := e2eBinaries(t)
	srv := startE2EServer(t, hodei)
	events := watchE2EEvents(t, srv)
	dir := e2eScriptDir(t)
	a1 := startE2EAgent(t, agentBin, srv, "e2e-doomed")
	w1 := events.registered(t, "e2e-doomed")

	script := fmt.Sprintf(`echo $$ > %[1]s/pid-$HODEI_JOB_ATTEMPT
echo "attempt $HODEI_JOB_ATTEMPT running"
while [ ! -e %[1]s/go ]; do sleep 0.05; done
echo "attempt $HODEI_JOB_ATTEMPT done"`, e2eQuote(dir))
	id := submitE2EJob(t, hodei, srv, "e2e-requeue", script)
	if e := events.ofJob(t, domain.TypeJobStarted, id, 1); e.WorkerID != w1 {
		t.Fatalf("attempt 1 started on %s, want %s", e.WorkerID, w1)
	}
	events.waitLog(t, id, 1, "attempt 1 running")

	t0 := time.Now()
	a1.signal(t, syscall.SIGKILL)
	<-a1.exited
	lost := events.wait(t, domain.TypeWorkerLost, func(e e2eEvent) bool { return e.WorkerID == w1 })
	requeued := events.ofJob(t, domain.TypeJobRequeued, id, 1)
	t.Logf("agent SIGKILLed: worker.lost after %s, job.requeued after %s (heartbeat %s, bound %s)",
		sinceKill(lost, t0).Round(time.Millisecond), sinceKill(requeued, t0).Round(time.Millisecond), e2eHeartbeat, e2eLostBound)
	for _, e := range []e2eEvent{lost, requeued} {
		if d := sinceKill(e, t0); d > e2eLostBound {
			t.Errorf("%s recorded %s after the kill, want within %s", e.GetType(), d, e2eLostBound)
		}
	}
	if requeued.WorkerID != w1 {
		t.Errorf("job.requeued names worker %s, want %s", requeued.WorkerID, w1)
	}

	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	startE2EAgent(t, agentBin, srv, "e2e-rescuer")
	w2 := events.registered(t, "e2e-rescuer")
	if e := events.ofJob(t, domain.TypeJobStarted, id, 2); e.WorkerID != w2 {
		t.Fatalf("attempt 2 started on %s, want %s", e.WorkerID, w2)
	}
	events.ofJob(t, domain.TypeJobSucceeded, id, 2)
	if got, want := hodeiCLI(t, hodei, srv, "job", "logs", id, "--attempt", "2"), "attempt 2 running\r\nattempt 2 done\r\n"; got != want {
		t.Errorf("hodei job logs --attempt 2 = %q, want %q", got, want)
	}
}

// TestE2EStaleAttemptIsFenced freezes an agent (SIGSTOP) past the lost
// deadline while its job writes output, lets a second agent take attempt 2,
// then thaws the first (SIGCONT): its late output for attempt 1 is rejected,
// the server fences the attempt, the agent kills the process, and nothing of
// attempt 1 reaches the log or the job's events any more.
func TestE2EStaleAttemptIsFenced(t *testing.T) {
	hodei, agentBin := e2eBinaries(t)
	srv := startE2EServer(t, hodei)
	events := watchE2EEvents(t, srv)
	dir := e2eScriptDir(t)
	a1 := startE2EAgent(t, agentBin, srv, "e2e-frozen")
	w1 := events.registered(t, "e2e-frozen")

	// Attempt 1 writes a line every 10ms forever; attempt 2 waits for the
	// go-ahead marker.
	script := fmt.Sprintf(`echo $$ > %[1]s/pid-$HODEI_JOB_ATTEMPT
if [ "$HODEI_JOB_ATTEMPT" = 1 ]; then
  i=0
  while :; do i=$((i+1)); echo "stale attempt 1 line $i"; sleep 0.01; done
fi
echo "attempt $HODEI_JOB_ATTEMPT running"
while [ ! -e %[1]s/go ]; do sleep 0.05; done
echo "attempt $HODEI_JOB_ATTEMPT done"`, e2eQuote(dir))
	id := submitE2EJob(t, hodei, srv, "e2e-fence", script)
	if e := events.ofJob(t, domain.TypeJobStarted, id, 1); e.WorkerID != w1 {
		t.Fatalf("attempt 1 started on %s, want %s", e.WorkerID, w1)
	}
	events.waitLog(t, id, 1, "stale attempt 1 line 2")
	pid1 := e2ePid(dir, 1)
	if pid1 <= 0 {
		t.Fatal("attempt 1 wrote no pid")
	}
	// A pidfd tells when the attempt's process exits, although it is the
	// agent's child, not ours.
	pidfd, err := unix.PidfdOpen(pid1, 0)
	if err != nil {
		t.Fatalf("pidfd_open(%d): %v", pid1, err)
	}
	defer unix.Close(pidfd)

	t0 := time.Now()
	a1.signal(t, syscall.SIGSTOP)
	lost := events.wait(t, domain.TypeWorkerLost, func(e e2eEvent) bool { return e.WorkerID == w1 })
	requeued := events.ofJob(t, domain.TypeJobRequeued, id, 1)
	t.Logf("agent SIGSTOPped: worker.lost after %s, job.requeued after %s (heartbeat %s, bound %s)",
		sinceKill(lost, t0).Round(time.Millisecond), sinceKill(requeued, t0).Round(time.Millisecond), e2eHeartbeat, e2eLostBound)
	for _, e := range []e2eEvent{lost, requeued} {
		if d := sinceKill(e, t0); d > e2eLostBound {
			t.Errorf("%s recorded %s after the agent froze, want within %s", e.GetType(), d, e2eLostBound)
		}
	}

	startE2EAgent(t, agentBin, srv, "e2e-successor")
	w2 := events.registered(t, "e2e-successor")
	if e := events.ofJob(t, domain.TypeJobStarted, id, 2); e.WorkerID != w2 {
		t.Fatalf("attempt 2 started on %s, want %s", e.WorkerID, w2)
	}
	events.waitLog(t, id, 2, "attempt 2 running")
	stale := hodeiCLI(t, hodei, srv, "job", "logs", id, "--attempt", "1")

	// Thaw the first agent: it ships attempt 1's backlog and reports on.
	t1 := time.Now()
	a1.signal(t, syscall.SIGCONT)
	a1.stderr.waitFor(t, "\"attempt fenced\" in the agent's log", a1.exited, func(s string) bool {
		return strings.Contains(s, "attempt fenced")
	})
	n, err := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, int(e2eWait/time.Millisecond))
	for errors.Is(err, unix.EINTR) {
		n, err = unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, int(e2eWait/time.Millisecond))
	}
	if err != nil || n != 1 {
		t.Fatalf("attempt 1's process %d still running %s after the agent resumed (poll = %d, %v)", pid1, e2eWait, n, err)
	}
	t.Logf("agent resumed: attempt 1's process killed %s later", time.Since(t1).Round(time.Millisecond))

	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if e := events.ofJob(t, domain.TypeJobSucceeded, id, 2); e.WorkerID != w2 {
		t.Fatalf("job succeeded on %s, want %s", e.WorkerID, w2)
	}
	if got, want := hodeiCLI(t, hodei, srv, "job", "logs", id, "--attempt", "2"), "attempt 2 running\r\nattempt 2 done\r\n"; got != want {
		t.Errorf("hodei job logs --attempt 2 = %q, want %q", got, want)
	}
	if got := hodeiCLI(t, hodei, srv, "job", "logs", id, "--attempt", "1"); got != stale {
		t.Errorf("attempt 1's log grew after its worker was lost: %d bytes, then %d", len(stale), len(got))
	}
	// The job's timeline: nothing from the first agent after the re-queue.
	for _, e := range events.all() {
		if e.GetStream() == domain.JobStream(id) && e.GetPosition() > requeued.GetPosition() && e.GetActor() == "agent:"+w1 {
			t.Errorf("late report of the fenced agent recorded: %d %s", e.GetPosition(), e.GetType())
		}
	}
}

// e2eQuote quotes s for /bin/sh.
func e2eQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestE2EBenchLogsAndConnect runs `hodei bench logs` and `hodei bench
// connect`, shortened, with the built hodei-agent, and checks that their
// JSON has the documented fields. The figures are not checked: benchmarks
// measure, they do not assert.
func TestE2EBenchLogsAndConnect(t *testing.T) {
	hodei, agentBin := e2eBinaries(t)
	for _, tc := range []struct {
		args   []string
		fields []string
	}{
		{[]string{"bench", "logs", "--samples", "10", "--flooders", "1"},
			[]string{"p50_ms", "p99_ms", "flood_p50_ms", "flood_p99_ms", "flood_mb_per_sec"}},
		{[]string{"bench", "connect", "--runs", "3"}, []string{"p50_ms", "p99_ms", "runs"}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, hodei, append(tc.args, "-o", "json", "--agent-binary", agentBin, "--timeout", "1m")...)
		cmd.Env = e2eEnv()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("hodei %s: %v\n%s", strings.Join(tc.args, " "), err, stderr.String())
		}
		var res map[string]float64
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("hodei %s -o json printed %q: %v", strings.Join(tc.args, " "), out, err)
		}
		for _, f := range tc.fields {
			if v, ok := res[f]; !ok || v <= 0 {
				t.Errorf("hodei %s -o json: %s = %v (present %v), want a positive number", strings.Join(tc.args, " "), f, v, ok)
			}
		}
		t.Logf("hodei %s: %s", strings.Join(tc.args, " "), bytes.TrimSpace(out))
	}
}
