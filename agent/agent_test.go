package agent_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/hodei-jobs/hodei/agent"
	"github.com/hodei-jobs/hodei/agent/agenttest"
	"github.com/hodei-jobs/hodei/hwp/hwppb"
)

const waitLimit = 30 * time.Second

type harness struct {
	t      *testing.T
	srv    *agenttest.Server
	ag     *agent.Agent
	cfg    agent.Config
	cancel context.CancelFunc
	runErr chan error
}

func (h *harness) name() string { return h.cfg.Name }

// start runs a fake server and an agent connected to it; both stop at test end.
func start(t *testing.T, opts agenttest.Options, mod func(*agent.Config)) *harness {
	t.Helper()
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 50 * time.Millisecond
	}
	srv := agenttest.New(opts)
	if err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	cfg := agent.Config{
		Server:      srv.Addr(),
		Token:       "join",
		Name:        "a1",
		Slots:       4,
		WorkDir:     t.TempDir(),
		CancelGrace: 2 * time.Second,
		Backoff:     agent.Backoff{Min: 5 * time.Millisecond, Max: 50 * time.Millisecond},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if mod != nil {
		mod(&cfg)
	}
	ag, err := agent.New(cfg)
	if err != nil {
		t.Fatalf("agent.New() = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, srv: srv, ag: ag, cfg: cfg, cancel: cancel, runErr: make(chan error, 1)}
	go func() { h.runErr <- ag.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.runErr:
		case <-time.After(waitLimit):
			t.Errorf("agent Run did not return after cancel")
		}
	})
	return h
}

func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	h.t.Cleanup(cancel)
	return ctx
}

func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	if err := h.srv.WaitFor(h.ctx(), cond); err != nil {
		h.t.Fatalf("waiting for %s: %v", what, err)
	}
}

func (h *harness) waitConnected() {
	h.t.Helper()
	h.waitFor("agent connected", func() bool { return h.srv.Connected(h.name()) })
}

func (h *harness) assign(a *hwppb.Assign) {
	h.t.Helper()
	if a.Attempt == 0 {
		a.Attempt = 1
	}
	if err := h.srv.Assign(h.name(), a); err != nil {
		h.t.Fatalf("Assign() = %v", err)
	}
}

func (h *harness) waitFinished(job string, attempt uint32) *hwppb.JobFinished {
	h.t.Helper()
	var f *hwppb.JobFinished
	h.waitFor("job "+job+" finished", func() bool {
		f, _ = h.srv.Finished(job, attempt)
		return f != nil
	})
	return f
}

func (h *harness) waitLog(job string, attempt uint32, re *regexp.Regexp) [][]byte {
	h.t.Helper()
	var m [][]byte
	h.waitFor(fmt.Sprintf("log of %s matching %s", job, re), func() bool {
		m = re.FindSubmatch(h.srv.Log(job, attempt))
		return m != nil
	})
	return m
}

func (h *harness) noViolations() {
	h.t.Helper()
	if v := h.srv.Violations(); len(v) > 0 {
		h.t.Fatalf("fake server saw violations: %q", v)
	}
}

func crc(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

func TestColoursArriveByteExact(t *testing.T) {
	h := start(t, agenttest.Options{}, nil)
	h.waitConnected()
	h.assign(&hwppb.Assign{JobId: "colours", Script: `printf '\033[31mred\033[0m'`})
	f := h.waitFinished("colours", 1)
	got := h.srv.Log("colours", 1)
	if want := "\x1b[31mred\x1b[0m"; string(got) != want {
		t.Fatalf("log = %q, want %q", got, want)
	}
	if f.Reason != hwppb.FinishReason_EXITED || f.ExitCode != 0 || f.LogBytes != uint64(len(got)) || f.LogCrc32C != crc(got) {
		t.Fatalf("JobFinished = %v", f)
	}
	if f.StartedAt == nil || f.FinishedAt == nil {
		t.Fatalf("JobFinished lacks timings: %v", f)
	}
	st := h.srv.Started()
	if len(st) != 1 || st[0].JobId != "colours" || st[0].Pid <= 0 {
		t.Fatalf("JobStarted = %v", st)
	}
	if acc := h.srv.Accepted(); len(acc) != 1 {
		t.Fatalf("JobAccepted = %v", acc)
	}
	h.noViolations()
}

func TestJobEnvAndExitCode(t *testing.T) {
	h := start(t, agenttest.Options{}, nil)
	h.waitConnected()
	dir := t.TempDir()
	h.assign(&hwppb.Assign{JobId: "env", Attempt: 2, Script: `echo "$GREETING $HODEI_JOB_ID $HODEI_JOB_ATTEMPT $(pwd) tok=${HODEI_TOKEN:-none}"; exit 7`,
		Env: map[string]string{"GREETING": "hello"}, WorkingDir: dir})
	f := h.waitFinished("env", 2)
	if want := "hello env 2 " + dir + " tok=none\r\n"; string(h.srv.Log("env", 2)) != want {
		t.Fatalf("log = %q, want %q", h.srv.Log("env", 2), want)
	}
	if f.ExitCode != 7 || f.Reason != hwppb.FinishReason_EXITED {
		t.Fatalf("JobFinished = %v, want exit 7", f)
	}
}

func TestSecretsNeverLeaveTheAgent(t *testing.T) {
	h := start(t, agenttest.Options{}, nil)
	h.waitConnected()
	token := "s3cr3t-T0ken-value"
	key := "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90\n-----END KEY-----"
	// The token is written in two separate writes split at every position,
	// then whole, base64-encoded at three alignments, URL-encoded; the key
	// goes through the PTY's \n -> \r\n.
	script := `
n=${#TOKEN}; i=1
while [ $i -lt $n ]; do
  printf '%s' "$(printf '%s' "$TOKEN" | cut -c1-$i)"
  printf '%s|\n' "$(printf '%s' "$TOKEN" | cut -c$((i+1))-)"
  i=$((i+1))
done
echo "token=$TOKEN"
printf '%s' "$TOKEN" | base64
printf 'x%s' "$TOKEN" | base64
printf 'xy%s' "$TOKEN" | base64
echo "url=s3cr3t-T0ken-value%21"
printf '%s\n' "$KEY"
echo done`
	h.assign(&hwppb.Assign{JobId: "secrets", Script: script,
		Secrets: map[string]string{"TOKEN": token, "KEY": key, "URLPW": "s3cr3t-T0ken-value!"}})
	f := h.waitFinished("secrets", 1)
	log := h.srv.Log("secrets", 1)
	if f.Reason != hwppb.FinishReason_EXITED || !bytes.HasSuffix(log, []byte("done\r\n")) {
		t.Fatalf("JobFinished = %v, log = %q", f, log)
	}
	leaks := []string{token, key, strings.ReplaceAll(key, "\n", "\r\n"), "MIIBOgIBAAJBAKj34GkxFhD90", "s3cr3t-T0ken-value%21"}
	for _, pre := range []string{"", "x", "xy"} {
		enc := base64.StdEncoding.EncodeToString([]byte(pre + token))
		leaks = append(leaks, enc[len(pre)/3*4+4:len(enc)-4]) // stable middle
	}
	for _, l := range leaks {
		if bytes.Contains(log, []byte(l)) {
			t.Errorf("log contains secret form %q:\n%s", l, log)
		}
	}
	if n := bytes.Count(log, []byte("[MASKED]")); n < len(token)+5 {
		t.Errorf("log has %d markers, want >= %d:\n%s", n, len(token)+5, log)
	}
}

func TestShortSecretFailsStart(t *testing.T) {
	h := start(t, agenttest.Options{}, nil)
	h.waitConnected()
	h.assign(&hwppb.Assign{JobId: "short", Script: `echo "$PIN"`, Secrets: map[string]string{"PIN": "1234"}})
	f := h.waitFinished("short", 1)
	if f.Reason != hwppb.FinishReason_START_FAILED || !strings.Contains(f.Message, `"PIN"`) || !strings.Contains(f.Message, "minimum") || strings.Contains(f.Message, "1234") {
		t.Fatalf("JobFinished = %v, want START_FAILED naming PIN and the minimum", f)
	}
	if len(h.srv.Log("short", 1)) != 0 || len(h.srv.Started()) != 0 {
		t.Fatalf("a job with a short secret ran: log %q, started %v", h.srv.Log("short", 1), h.srv.Started())
	}
}

var pidRe = regexp.MustCompile(`pid=(\d+)\.`)

func pidFrom(t *testing.T, m [][]byte) int {
	t.Helper()
	pid, err := strconv.Atoi(string(m[1]))
	if err != nil || pid <= 0 {
		t.Fatalf("bad pid %q", m[1])
	}
	return pid
}

func TestCancelKillsBackgroundedGrandchild(t *testing.T) {
	h := start(t, agenttest.Options{}, nil)
	h.waitConnected()
	h.assign(&hwppb.Assign{JobId: "cancel", Script: `sleep 1000 & echo "pid=$!."; wait`})
	pid := pidFrom(t, h.waitLog("cancel", 1, pidRe))
	if err := h.srv.Cancel(h.name(), "cancel", 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	f := h.waitFinished("cancel", 1)
	if f.Reason != hwppb.FinishReason_CANCELLED || f.Signal != "SIGTERM" {
		t.Fatalf("JobFinished = %v, want CANCELLED by SIGTERM", f)
	}
	if err := agenttest.WaitPidGone(h.ctx(), pid); err != nil {
		t.Fatalf("grandchild survived cancel: %v", err)
	}
	h.noViolations()
}

func TestCancelEscalatesToSIGKILL(t *testing.T) {
	h := start(t, agenttest.Options{}, nil)
	h.waitConnected()
	h.assign(&hwppb.Assign{JobId: "stubborn", Script: `trap '' TERM; sleep 1000 & echo "pid=$!."; while :; do wait; done`})
	pid := pidFrom(t, h.waitLog("stubborn", 1, pidRe))
	if err := h.srv.Cancel(h.name(), "stubborn", 1, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	f := h.waitFinished("stubborn", 1)
	if f.Reason != hwppb.FinishReason_CANCELLED || f.Signal != "SIGKILL" || f.ExitCode != -1 {
		t.Fatalf("JobFinished = %v, want CANCELLED by SIGKILL", f)
	}
	if err := agenttest.WaitPidGone(h.ctx(), pid); err != nil {
		t.Fatalf("grandchild survived: %v", err)
	}
}

func TestTimeout(t *testing.T) {
	h := start(t, agenttest.Options{}, nil)
	h.waitConnected()
	h.assign(&hwppb.Assign{JobId: "slow", Script: `echo started; sleep 1000`, Timeout: durationpb.New(200 * time.Millisecond)})
	f := h.waitFinished("slow", 1)
	if f.Reason != hwppb.FinishReason_TIMED_OUT || f.Signal != "SIGTERM" || !strings.Contains(f.Message, "timed out") {
		t.Fatalf("JobFinished = %v, want TIMED_OUT by SIGTERM", f)
	}
	if got := string(h.srv.Log("slow", 1)); got != "started\r\n" {
		t.Fatalf("log = %q", got)
	}
	if d := f.FinishedAt.AsTime().Sub(f.StartedAt.AsTime()); d < 200*time.Millisecond {
		t.Fatalf("finished after %v, before the timeout", d)
	}
}

// touch creates a file the job script waits for.
func touch(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// expectedLines is the PTY rendering of `echo "line $i"` for i in [from, to).
func expectedLines(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "line %d\r\n", i)
	}
	return b.String()
}

func testReconnect(t *testing.T, opts agenttest.Options) {
	h := start(t, opts, nil)
	h.waitConnected()
	dir := t.TempDir()
	// Phase 1 is delivered live; phase 2 is written while the server is
	// down (spooled); phase 3 after the reconnect.
	script := `
i=0; while [ $i -lt 300 ]; do echo "line $i"; i=$((i+1)); done
while [ ! -e go1 ]; do sleep 0.01; done
while [ $i -lt 2300 ]; do echo "line $i"; i=$((i+1)); done
echo done > phase2
while [ ! -e go2 ]; do sleep 0.01; done
while [ $i -lt 2500 ]; do echo "line $i"; i=$((i+1)); done
exit 3`
	h.assign(&hwppb.Assign{JobId: "resume", Script: script, WorkingDir: dir})
	h.waitLog("resume", 1, regexp.MustCompile(`line 299\r\n`))

	// The job announces the end of phase 2 through a FIFO: reading it blocks
	// until the job writes (no polling; the server is down, so there is no
	// server state to wait on).
	fifo := filepath.Join(dir, "phase2")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	phase2 := make(chan error, 1)
	go func() {
		f, err := os.Open(fifo) // blocks until the job opens it for writing
		if err == nil {
			_, err = io.ReadAll(f)
			f.Close()
		}
		phase2 <- err
	}()
	h.srv.Stop() // every connection drops; the job keeps running
	touch(t, dir, "go1")
	select {
	case err := <-phase2:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitLimit):
		t.Fatal("job did not reach phase 2")
	}
	if err := h.srv.Start(""); err != nil {
		t.Fatalf("restart fake server: %v", err)
	}
	h.waitFor("reconnect", func() bool { return len(h.srv.Hellos()) >= 2 && h.srv.Connected(h.name()) })
	hello := h.srv.Hellos()[1]
	if len(hello.RunningJobs) != 1 || hello.RunningJobs[0].JobId != "resume" || hello.AgentId != "w-a1" || hello.Credentials.GetIdentityToken() == "" {
		t.Fatalf("reconnect Hello = %v, want the running job, the worker id and the identity token", hello)
	}
	touch(t, dir, "go2")
	f := h.waitFinished("resume", 1)

	got := h.srv.Log("resume", 1)
	want := expectedLines(0, 2500)
	if string(got) != want {
		t.Fatalf("log after reconnect differs: got %d bytes, want %d; first difference at %d", len(got), len(want), firstDiff(got, []byte(want)))
	}
	if f.ExitCode != 3 || f.LogBytes != uint64(len(want)) || f.LogCrc32C != crc([]byte(want)) {
		t.Fatalf("JobFinished = %v", f)
	}
	_, dup := h.srv.LogStats("resume", 1)
	if !opts.NoResume && dup != 0 {
		t.Fatalf("server received %d bytes twice despite Welcome.resume", dup)
	}
	h.noViolations()
	// The finished ack lets the agent drop the spool.
	h.waitFor("spool dropped", func() bool {
		hb := h.srv.Heartbeats()
		return len(hb) > 0 && len(hb[len(hb)-1].Running) == 0
	})
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestReconnectResendsSpooledLogOnce(t *testing.T) {
	t.Run("resume", func(t *testing.T) { testReconnect(t, agenttest.Options{}) })
	t.Run("from-ack", func(t *testing.T) { testReconnect(t, agenttest.Options{NoResume: true}) })
}

func TestFenceKillsStaleAttempt(t *testing.T) {
	h := start(t, agenttest.Options{}, nil)
	h.waitConnected()
	h.assign(&hwppb.Assign{JobId: "stale", Attempt: 1, Script: `sleep 1000 & echo "pid=$!."; wait`})
	pid := pidFrom(t, h.waitLog("stale", 1, pidRe))
	spoolPath := filepath.Join(h.cfg.WorkDir, "spool", "stale.1.log")
	if _, err := os.Stat(spoolPath); err != nil {
		t.Fatalf("spool missing while running: %v", err)
	}
	if err := h.srv.Fence(h.name(), "stale", 1); err != nil {
		t.Fatal(err)
	}
	// The server reassigns at once; the fenced attempt must not block it.
	h.assign(&hwppb.Assign{JobId: "stale", Attempt: 2, Script: `echo two`})
	if err := agenttest.WaitPidGone(h.ctx(), pid); err != nil {
		t.Fatalf("fenced attempt still running: %v", err)
	}
	// Heartbeats list running attempts; wait for one without it.
	n := len(h.srv.Heartbeats())
	h.waitFor("heartbeat without the fenced job", func() bool {
		hb := h.srv.Heartbeats()
		return len(hb) > n && len(hb[len(hb)-1].Running) == 0 && hb[len(hb)-1].FreeSlots == 4
	})
	// The job goroutine removes the spool after it has reaped the group,
	// which may be a moment after the heartbeat stopped listing it.
	h.waitFor("spool of the fenced attempt removed", func() bool {
		_, err := os.Stat(spoolPath)
		return os.IsNotExist(err)
	})
	if f, _ := h.srv.Finished("stale", 1); f != nil {
		t.Fatalf("fenced attempt reported JobFinished %v", f)
	}
	// The new attempt runs normally.
	if f := h.waitFinished("stale", 2); f.ExitCode != 0 || string(h.srv.Log("stale", 2)) != "two\r\n" {
		t.Fatalf("attempt 2: %v %q", f, h.srv.Log("stale", 2))
	}
}

func TestIncompatibleVersionRefusedClearly(t *testing.T) {
	h := start(t, agenttest.Options{}, func(c *agent.Config) {
		c.ProtocolVersion = &hwppb.Version{Major: hwppb.ProtocolMajor + 1}
	})
	var err error
	select {
	case err = <-h.runErr:
		h.runErr <- err // for cleanup
	case <-time.After(waitLimit):
		t.Fatal("Run did not return on refusal")
	}
	var re *agent.RefusedError
	if !errors.As(err, &re) || re.Code != hwppb.Refused_INCOMPATIBLE_VERSION {
		t.Fatalf("Run() = %v, want *RefusedError INCOMPATIBLE_VERSION", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "incompatible protocol version") || !strings.Contains(msg, "agent speaks HWP 2.0") {
		t.Fatalf("Run() error %q is not clear", msg)
	}
	if n := len(h.srv.Hellos()); n != 1 {
		t.Fatalf("agent said Hello %d times, want 1 (no retry after a permanent refusal)", n)
	}
}

func TestHeartbeatsCarryRealTelemetry(t *testing.T) {
	h := start(t, agenttest.Options{}, nil)
	h.waitFor("two heartbeats", func() bool { return len(h.srv.Heartbeats()) >= 2 })
	hb := h.srv.Heartbeats()[1]
	if hb.MemoryUsedBytes == 0 || hb.MemoryTotalBytes == 0 || hb.MemoryUsedBytes > hb.MemoryTotalBytes || hb.ProcessRssBytes == 0 {
		t.Fatalf("Heartbeat = %v, want nonzero memory figures", hb)
	}
	if hb.Seq != 2 || hb.FreeSlots != 4 || hb.Time == nil || hb.CpuPercent < 0 || hb.CpuPercent > 100 {
		t.Fatalf("Heartbeat = %v", hb)
	}
	hello := h.srv.Hellos()[0]
	if hello.Capacity.GetSlots() != 4 || hello.Capacity.GetCpuMillis() == 0 || hello.Capacity.GetMemoryBytes() == 0 ||
		hello.ProtocolVersion.GetMajor() != hwppb.ProtocolMajor || hello.Credentials.GetJoinToken() != "join" || hello.Name != "a1" {
		t.Fatalf("Hello = %v", hello)
	}
}

func TestSlotLimitAndInvalidAssign(t *testing.T) {
	h := start(t, agenttest.Options{}, func(c *agent.Config) { c.Slots = 1 })
	h.waitConnected()
	dir := t.TempDir()
	h.assign(&hwppb.Assign{JobId: "first", Script: `while [ ! -e go ]; do sleep 0.01; done`, WorkingDir: dir})
	h.waitFor("first accepted", func() bool { return len(h.srv.Accepted()) == 1 })
	h.assign(&hwppb.Assign{JobId: "second", Script: `true`})
	h.assign(&hwppb.Assign{JobId: "../etc", Script: `true`})
	h.assign(&hwppb.Assign{JobId: "first", Script: `true`}) // repeated: answered, not rerun
	h.waitFor("two rejections", func() bool { return len(h.srv.Rejected()) >= 2 })
	rej := h.srv.Rejected()
	if rej[0].JobId != "second" || rej[0].Reason != hwppb.JobRejected_NO_CAPACITY {
		t.Fatalf("rejection 0 = %v, want NO_CAPACITY", rej[0])
	}
	if rej[1].Reason != hwppb.JobRejected_INVALID || !strings.Contains(rej[1].Message, "assign.job_id") {
		t.Fatalf("rejection 1 = %v, want INVALID naming assign.job_id", rej[1])
	}
	h.waitFor("repeated accept", func() bool { return len(h.srv.Accepted()) >= 2 })
	touch(t, dir, "go")
	h.waitFinished("first", 1)
	if n := len(h.srv.Started()); n != 1 {
		t.Fatalf("JobStarted %d times, want 1", n)
	}
}

func TestDrainFinishesJobsThenExits(t *testing.T) {
	h := start(t, agenttest.Options{}, nil)
	h.waitConnected()
	dir := t.TempDir()
	h.assign(&hwppb.Assign{JobId: "long", Script: `echo working; while [ ! -e go ]; do sleep 0.01; done; echo finished`, WorkingDir: dir})
	h.waitLog("long", 1, regexp.MustCompile(`working`))
	if err := h.srv.Drain(h.name(), false); err != nil {
		t.Fatal(err)
	}
	h.waitFor("draining notice", func() bool { return len(h.srv.Drainings()) == 1 })
	h.assign(&hwppb.Assign{JobId: "late", Script: `true`})
	h.waitFor("late job rejected", func() bool { return len(h.srv.Rejected()) == 1 })
	if r := h.srv.Rejected()[0]; r.Reason != hwppb.JobRejected_DRAINING {
		t.Fatalf("JobRejected = %v, want DRAINING", r)
	}
	touch(t, dir, "go")
	select {
	case err := <-h.runErr:
		h.runErr <- err
		if err != nil {
			t.Fatalf("Run() = %v after drain, want nil", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Run did not return after drain")
	}
	if f, _ := h.srv.Finished("long", 1); f == nil || f.Reason != hwppb.FinishReason_EXITED {
		t.Fatalf("JobFinished = %v, want EXITED", f)
	}
	if g := h.srv.Goodbyes(); len(g) != 1 || g[0].Reason != hwppb.Goodbye_DRAINED {
		t.Fatalf("Goodbye = %v, want DRAINED", g)
	}
	if got := string(h.srv.Log("long", 1)); got != "working\r\nfinished\r\n" {
		t.Fatalf("log = %q", got)
	}
}

func TestStopCancelsRunningJobs(t *testing.T) {
	h := start(t, agenttest.Options{}, nil)
	h.waitConnected()
	h.assign(&hwppb.Assign{JobId: "victim", Script: `sleep 1000 & echo "pid=$!."; wait`})
	pid := pidFrom(t, h.waitLog("victim", 1, pidRe))
	h.cancel()
	select {
	case err := <-h.runErr:
		h.runErr <- err
		if err != nil {
			t.Fatalf("Run() = %v after stop, want nil", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Run did not return after stop")
	}
	if f, _ := h.srv.Finished("victim", 1); f == nil || f.Reason != hwppb.FinishReason_AGENT_STOPPED {
		t.Fatalf("JobFinished = %v, want AGENT_STOPPED", f)
	}
	if g := h.srv.Goodbyes(); len(g) != 1 || g[0].Reason != hwppb.Goodbye_STOPPED {
		t.Fatalf("Goodbye = %v, want STOPPED", g)
	}
	if err := agenttest.WaitPidGone(h.ctx(), pid); err != nil {
		t.Fatal(err)
	}
}

func TestUnacknowledgedFinishIsResent(t *testing.T) {
	// With no acks the agent keeps the attempt; after a reconnect it lists
	// it in Hello and sends JobFinished again.
	h := start(t, agenttest.Options{NoAck: true}, func(c *agent.Config) { c.StopTimeout = 100 * time.Millisecond })
	h.waitConnected()
	h.assign(&hwppb.Assign{JobId: "unacked", Script: `echo hi`})
	h.waitFinished("unacked", 1)
	h.srv.Stop()
	if err := h.srv.Start(""); err != nil {
		t.Fatal(err)
	}
	h.waitFor("second finish", func() bool { _, n := h.srv.Finished("unacked", 1); return n >= 2 })
	hello := h.srv.Hellos()[1]
	if len(hello.RunningJobs) != 1 || !hello.RunningJobs[0].Finished || hello.RunningJobs[0].SentOffset != 4 {
		t.Fatalf("Hello.running_jobs = %v, want the finished, unacknowledged job", hello.RunningJobs)
	}
	if got := string(h.srv.Log("unacked", 1)); got != "hi\r\n" {
		t.Fatalf("log = %q", got)
	}
	h.noViolations()
}

// failingDialer fails a number of times, then dials for real.
type failingDialer struct {
	fails atomic.Int32
	next  agent.Dialer
}

func (d *failingDialer) Dial(ctx context.Context) (agent.Stream, func(), error) {
	if d.fails.Add(-1) >= 0 {
		return nil, nil, errors.New("dial: injected failure")
	}
	return d.next.Dial(ctx)
}

func TestRetriesThroughInjectedDialer(t *testing.T) {
	var d *failingDialer
	h := start(t, agenttest.Options{}, func(c *agent.Config) {
		d = &failingDialer{next: agent.GRPCDialer{Addr: c.Server}}
		d.fails.Store(3)
		c.Dialer = d
	})
	h.waitConnected()
	if n := d.fails.Load(); n >= 0 {
		t.Fatalf("dialer has %d failures left", n+1)
	}
}

func TestLargeOutputThroughSmallWindow(t *testing.T) {
	// 1 MB through 4 KiB chunks with 8 KiB in flight: acks keep it moving.
	h := start(t, agenttest.Options{MaxLogChunk: 4 << 10, MaxInflight: 8 << 10}, nil)
	h.waitConnected()
	h.assign(&hwppb.Assign{JobId: "big", Script: `head -c 1000000 /dev/zero | tr '\0' x`})
	f := h.waitFinished("big", 1)
	got := h.srv.Log("big", 1)
	if len(got) != 1000000 || bytes.Count(got, []byte("x")) != 1000000 || f.LogBytes != 1000000 {
		t.Fatalf("log: %d bytes, %d x; JobFinished = %v", len(got), bytes.Count(got, []byte("x")), f)
	}
	if chunks, _ := h.srv.LogStats("big", 1); chunks < 1000000/(4<<10) {
		t.Fatalf("%d chunks, want >= %d with 4 KiB chunks", chunks, 1000000/(4<<10))
	}
	h.noViolations()
}

func TestFlushIntervalCoalescesTrickle(t *testing.T) {
	h := start(t, agenttest.Options{FlushInterval: 100 * time.Millisecond}, nil)
	h.waitConnected()
	h.assign(&hwppb.Assign{JobId: "trickle", Script: `i=0; while [ $i -lt 300 ]; do printf x; i=$((i+1)); done`})
	h.waitFinished("trickle", 1)
	if got := string(h.srv.Log("trickle", 1)); got != strings.Repeat("x", 300) {
		t.Fatalf("log = %q", got)
	}
	if chunks, _ := h.srv.LogStats("trickle", 1); chunks > 100 {
		t.Fatalf("%d chunks for 300 one-byte writes, want coalescing", chunks)
	}
}

func TestHostileServerMessagesAreSurvived(t *testing.T) {
	h := start(t, agenttest.Options{}, nil)
	h.waitConnected()
	neg := durationpb.New(-time.Second)
	bad := []*hwppb.ServerMessage{
		{},
		{Msg: &hwppb.ServerMessage_Assign{}},
		{Msg: &hwppb.ServerMessage_Assign{Assign: &hwppb.Assign{}}},
		{Msg: &hwppb.ServerMessage_Assign{Assign: &hwppb.Assign{JobId: "x", Attempt: 1, Script: "true", Timeout: neg}}},
		{Msg: &hwppb.ServerMessage_Assign{Assign: &hwppb.Assign{JobId: "x", Attempt: 1, Script: "true", Env: map[string]string{"A=B": "c"}}}},
		{Msg: &hwppb.ServerMessage_Assign{Assign: &hwppb.Assign{JobId: "x", Attempt: 1, Script: "true", Shell: []string{""}}}},
		{Msg: &hwppb.ServerMessage_Assign{Assign: &hwppb.Assign{JobId: "x", Attempt: 1, Script: "true", WorkingDir: "../../etc"}}},
		{Msg: &hwppb.ServerMessage_Assign{Assign: &hwppb.Assign{JobId: strings.Repeat("a", 200), Attempt: 1, Script: "true"}}},
		{Msg: &hwppb.ServerMessage_Cancel{}},
		{Msg: &hwppb.ServerMessage_Cancel{Cancel: &hwppb.Cancel{JobId: "nope", Attempt: 9, Grace: neg}}},
		{Msg: &hwppb.ServerMessage_Fence{}},
		{Msg: &hwppb.ServerMessage_LogAck{LogAck: &hwppb.LogAck{JobId: "nope", Attempt: 1, Offset: 1 << 60, Finished: true}}},
		{Msg: &hwppb.ServerMessage_TokenRefresh{}},
		{Msg: &hwppb.ServerMessage_Welcome{Welcome: &hwppb.Welcome{}}},
		{Msg: &hwppb.ServerMessage_Refused{}},
	}
	for _, m := range bad {
		if err := h.srv.Send(h.name(), m); err != nil {
			t.Fatal(err)
		}
	}
	h.waitFor("invalid assignments rejected", func() bool { return len(h.srv.Rejected()) >= 7 })
	for _, r := range h.srv.Rejected() {
		if r.Reason != hwppb.JobRejected_INVALID {
			t.Errorf("JobRejected = %v, want INVALID", r)
		}
	}
	h.assign(&hwppb.Assign{JobId: "after", Script: `echo still here`})
	if f := h.waitFinished("after", 1); f.ExitCode != 0 || string(h.srv.Log("after", 1)) != "still here\r\n" {
		t.Fatalf("agent broken after hostile messages: %v %q", f, h.srv.Log("after", 1))
	}
	if len(h.srv.Hellos()) != 1 {
		t.Fatalf("agent reconnected %d times", len(h.srv.Hellos())-1)
	}
}
