package main

import (
	"bytes"
	"context"
	"encoding/json"
	"hash/crc32"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/hodei-jobs/hodei/api"
	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/logstore"
	"github.com/hodei-jobs/hodei/pki"
	"github.com/hodei-jobs/hodei/secrets"
)

// cliAgent is a fake agent: it records assignments for the test to run.
type cliAgent struct{ assigned chan core.Assignment }

func (a *cliAgent) Assign(as core.Assignment) error                    { a.assigned <- as; return nil }
func (a *cliAgent) Cancel(string, uint32, string, time.Duration) error { return nil }
func (a *cliAgent) Fence(string, uint32, string) error                 { return nil }
func (a *cliAgent) Drain(string) error                                 { return nil }

// cliServer is a core on a memory store with the JobService on a loopback
// port: what `hodei server` serves, without the rest of the server.
type cliServer struct {
	t      *testing.T
	ctx    context.Context
	addr   string
	core   *core.Core
	logs   *logstore.Store
	agent  *cliAgent
	worker string
}

func startCLIServer(t *testing.T) *cliServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	store := memory.New(memory.Options{})
	logs, err := logstore.Open(t.TempDir(), logstore.Options{SyncInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := secrets.Open(t.TempDir(), secrets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := core.New(store, core.Config{HeartbeatInterval: time.Hour, Logger: slog.New(slog.DiscardHandler), Secrets: sec})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Open(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := c.Run(ctx); err != nil {
			t.Errorf("core Run() = %v", err)
		}
	}()
	// TLS with a CA of its own and an admin token, as `hodei server` serves;
	// the CLI finds both through HODEI_CA and HODEI_TOKEN.
	pkiDir := t.TempDir()
	bundle, err := pki.LoadOrCreate(pkiDir, pki.DefaultSANs(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.Open(pkiDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := tokens.Bootstrap()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("HODEI_CA", filepath.Join(pkiDir, pki.CAFile))
	t.Setenv("HODEI_TOKEN", admin)
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(bundle.ServerTLS())))
	api.New(c, logs, sec, api.Options{Logger: slog.New(slog.DiscardHandler), Authenticator: tokens}).RegisterGRPC(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer wg.Done()
		_ = g.Serve(lis)
	}()
	t.Cleanup(func() {
		g.Stop()
		cancel()
		wg.Wait()
		_ = logs.Close()
	})
	s := &cliServer{t: t, ctx: ctx, addr: lis.Addr().String(), core: c, logs: logs, agent: &cliAgent{assigned: make(chan core.Assignment, 10)}}
	s.worker, _, err = c.Connect(ctx, core.Hello{Name: "w1", Capacity: domain.Resources{Slots: 2, CPUMillis: 4000, MemoryBytes: 8 << 30},
		Labels: map[string]string{"os": "linux"}, AgentVersion: "test", ProtocolVersion: 1}, s.agent)
	if err != nil {
		t.Fatal(err)
	}
	// Let the read models see the worker before the CLI lists it.
	head, err := store.Head(ctx)
	if err == nil {
		err = c.WaitFor(ctx, head.Position)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runJob plays the agent for the next assignment: output, then exit.
func (s *cliServer) runJob(output string, exit int) core.Assignment {
	s.t.Helper()
	var as core.Assignment
	select {
	case as = <-s.agent.assigned:
	case <-s.ctx.Done():
		s.t.Fatal("no assignment")
	}
	report := func(r core.Report) {
		if errs := s.core.ReportMany(s.ctx, s.worker, []core.Report{r}); errs[0] != nil {
			s.t.Errorf("report %+v: %v", r, errs[0])
		}
	}
	report(core.Report{Kind: core.ReportAccepted, JobID: as.JobID, Attempt: as.Attempt})
	report(core.Report{Kind: core.ReportStarted, JobID: as.JobID, Attempt: as.Attempt})
	if _, err := s.logs.Append(as.JobID, as.Attempt, 0, []byte(output)); err != nil {
		s.t.Error(err)
	}
	report(core.Report{Kind: core.ReportFinished, JobID: as.JobID, Attempt: as.Attempt, ExitCode: exit})
	if err := s.logs.Finish(as.JobID, as.Attempt, uint64(len(output)), crc32.Checksum([]byte(output), crc32.MakeTable(crc32.Castagnoli))); err != nil {
		s.t.Error(err)
	}
	return as
}

// hodei runs the CLI with args against s, with stdin.
func (s *cliServer) hodei(stdin string, args ...string) (int, string, string) {
	s.t.Helper()
	var out, errOut bytes.Buffer
	args = append(args, "--server", s.addr)
	code := Main(s.ctx, args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCLISubmitWaitPassesTheExitCode(t *testing.T) {
	s := startCLIServer(t)
	type result struct {
		code        int
		out, errOut string
	}
	done := make(chan result, 1)
	go func() {
		var out, errOut bytes.Buffer
		code := Main(s.ctx, []string{"job", "submit", "-c", "echo hi; exit 3", "--wait", "--env", "A=1", "--label", "team=infra",
			"--cpu", "500m", "--memory", "64Mi", "--timeout", "1m", "--server", s.addr}, strings.NewReader(""), &out, &errOut)
		done <- result{code, out.String(), errOut.String()}
	}()
	as := s.runJob("hi\r\n", 3)
	if as.Script != "echo hi; exit 3" || as.Env["A"] != "1" || as.Timeout != time.Minute {
		t.Fatalf("assignment = %+v", as)
	}
	r := <-done
	if r.code != 3 || r.out != "hi\r\n" || !strings.Contains(r.errOut, "failed: exit code 3") {
		t.Fatalf("submit --wait = %d, stdout %q, stderr %q", r.code, r.out, r.errOut)
	}

	// The job as the other commands see it.
	code, out, errOut := s.hodei("", "job", "get", as.JobID, "-o", "json")
	var j api.Job
	if code != 0 || json.Unmarshal([]byte(out), &j) != nil || j.Status != "failed" || j.ExitCode != 3 ||
		j.Spec.Resources.CPUMillis != 500 || j.Spec.Resources.MemoryBytes != 64<<20 || j.Spec.Labels["team"] != "infra" {
		t.Fatalf("job get -o json = %d %s %s", code, out, errOut)
	}
	code, out, _ = s.hodei("", "job", "get", as.JobID)
	if code != 0 || !strings.Contains(out, "failed: exit code 3") || !strings.Contains(out, "echo hi; exit 3") {
		t.Fatalf("job get = %d\n%s", code, out)
	}
	code, out, _ = s.hodei("", "job", "logs", as.JobID)
	if code != 0 || out != "hi\r\n" {
		t.Fatalf("job logs = %d %q", code, out)
	}
	code, out, _ = s.hodei("", "job", "ls")
	if code != 0 || !strings.Contains(out, as.JobID) || !strings.Contains(out, "failed") || !strings.HasPrefix(out, "ID") {
		t.Fatalf("job ls = %d\n%s", code, out)
	}
	code, out, _ = s.hodei("", "job", "events", as.JobID)
	if code != 0 || !strings.Contains(out, "job.submitted") || !strings.Contains(out, "job.failed") {
		t.Fatalf("job events = %d\n%s", code, out)
	}
}

func TestCLISubmitFromStdinAndFileIdempotently(t *testing.T) {
	s := startCLIServer(t)
	code, out, errOut := s.hodei("echo from stdin\n", "job", "submit", "--idempotency-key", "k1", "-o", "json")
	var res api.SubmitJobResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !res.Created || res.Job.Spec.Script != "echo from stdin\n" || res.Job.Spec.Name != "stdin" {
		t.Fatalf("submit from stdin = %d %s %s", code, out, errOut)
	}
	code, out, errOut = s.hodei("echo from stdin\n", "job", "submit", "--idempotency-key", "k1")
	if code != 0 || strings.TrimSpace(out) != res.Job.ID || !strings.Contains(errOut, "already names job") {
		t.Fatalf("retried submit = %d %q %q", code, out, errOut)
	}
	code, _, errOut = s.hodei("echo changed\n", "job", "submit", "--idempotency-key", "k1")
	if code != exitFailure || !strings.Contains(errOut, "idempotency_key") {
		t.Fatalf("reused key, other script = %d %q", code, errOut)
	}
	file := filepath.Join(t.TempDir(), "build.sh")
	if err := os.WriteFile(file, []byte("make\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = s.hodei("", "job", "submit", file)
	id := strings.TrimSpace(out)
	if code != 0 || id == "" {
		t.Fatalf("submit file = %d %q", code, out)
	}
	code, out, _ = s.hodei("", "job", "cancel", id)
	if code != 0 || !strings.Contains(out, "cancelled") && !strings.Contains(out, "cancel requested") {
		t.Fatalf("cancel = %d %q", code, out)
	}
	code, out, _ = s.hodei("", "job", "ls", "--status", "queued,running,cancelled,scheduled,accepted", "-o", "json")
	var list api.ListJobsResponse
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Jobs) != 2 {
		t.Fatalf("job ls -o json = %d %s", code, out)
	}
}

func TestCLIUsageErrorsSayWhatToDo(t *testing.T) {
	s := startCLIServer(t)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"job", "submit", "-c", "x", "--cpu", "lots"}, exitUsage, "--cpu"},
		{[]string{"job", "submit", "-c", "x", "--memory", "12 parsecs"}, exitUsage, "--memory"},
		{[]string{"job", "submit", "-c", "x", "--memory", "99Ti"}, exitUsage, "--memory"},
		{[]string{"job", "submit", "-c", "x", "--env", "NOEQUALS"}, exitUsage, "--env"},
		{[]string{"job", "submit", "-c", "x", "--selector", "gpu=yes please"}, exitUsage, "--selector"},
		{[]string{"job", "submit", "-c", "x", "--priority", "500"}, exitUsage, "--priority"},
		{[]string{"job", "submit", "-c", "x", "extra-file"}, exitUsage, "not both"},
		{[]string{"job", "submit", "/no/such/script"}, exitUsage, "script file"},
		{[]string{"job", "submit", "-c", "x", "-o", "yaml"}, exitUsage, "--output"},
		{[]string{"job", "get"}, exitUsage, "accepts 1 arg"},
		{[]string{"job", "get", "nope"}, exitFailure, "not found"},
		{[]string{"job", "ls", "--status", "sleeping"}, exitUsage, "--status"},
		{[]string{"job", "frobnicate"}, exitUsage, ""},
		{[]string{"secret", "set", "bad name!"}, exitUsage, "name"},
	}
	for _, tt := range tests {
		code, _, errOut := s.hodei("", tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("hodei %s = %d, stderr %q; want %d mentioning %q", strings.Join(tt.args, " "), code, errOut, tt.code, tt.want)
		}
	}
	// Nothing was submitted by the bad submits.
	if _, out, _ := s.hodei("", "job", "ls", "-o", "json"); !strings.Contains(out, `"jobs":[]`) {
		t.Fatalf("bad submits created jobs: %s", out)
	}
	// A stopped server: the error says what to do.
	var out, errOut bytes.Buffer
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	code := Main(s.ctx, []string{"job", "ls", "--server", addr}, strings.NewReader(""), &out, &errOut)
	if code != exitFailure || !strings.Contains(errOut.String(), "cannot reach server at "+addr) || !strings.Contains(errOut.String(), "hodei server") {
		t.Fatalf("unreachable server = %d %q", code, errOut.String())
	}
	t.Setenv("HODEI_SERVER", addr)
	out.Reset()
	errOut.Reset()
	if code := Main(s.ctx, []string{"worker", "ls"}, strings.NewReader(""), &out, &errOut); code != exitFailure || !strings.Contains(errOut.String(), addr) {
		t.Fatalf("HODEI_SERVER not used: %d %q", code, errOut.String())
	}
}

func TestCLIWorkersAndSecrets(t *testing.T) {
	s := startCLIServer(t)
	if err := s.core.Heartbeat(s.worker, core.Telemetry{CPUPercent: 12, MemoryUsedBytes: 1 << 30, MemoryTotal: 4 << 30}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := s.hodei("", "worker", "ls")
	if code != 0 || !strings.Contains(out, s.worker) || !strings.Contains(out, "12%") || !strings.Contains(out, "1Gi/4Gi") {
		t.Fatalf("worker ls = %d\n%s%s", code, out, errOut)
	}
	code, out, _ = s.hodei("", "worker", "drain", s.worker, "-o", "json")
	var w api.Worker
	if code != 0 || json.Unmarshal([]byte(out), &w) != nil || !w.Draining {
		t.Fatalf("worker drain = %d %s", code, out)
	}

	code, out, errOut = s.hodei("hunter2-password\n", "secret", "set", "prod/db")
	if code != 0 || !strings.Contains(out, "secret prod/db set") {
		t.Fatalf("secret set = %d %q %q", code, out, errOut)
	}
	code, _, errOut = s.hodei("short\n", "secret", "set", "prod/db")
	if code != exitUsage || !strings.Contains(errOut, "at least 6") || strings.Contains(errOut, "short") && strings.Contains(errOut, "\"short\"") {
		t.Fatalf("short secret = %d %q", code, errOut)
	}
	code, out, _ = s.hodei("", "secret", "ls")
	if code != 0 || !strings.Contains(out, "prod/db") || strings.Contains(out, "hunter2") {
		t.Fatalf("secret ls = %d %q", code, out)
	}
	if code, _, _ = s.hodei("", "secret", "rm", "prod/db"); code != 0 {
		t.Fatalf("secret rm = %d", code)
	}
	if code, _, errOut = s.hodei("", "secret", "rm", "prod/db"); code != exitFailure || !strings.Contains(errOut, "not found") {
		t.Fatalf("secret rm twice = %d %q", code, errOut)
	}
	var buf, ebuf bytes.Buffer
	if code := Main(s.ctx, []string{"completion", "bash"}, strings.NewReader(""), &buf, &ebuf); code != 0 || !strings.Contains(buf.String(), "bash completion") {
		t.Fatalf("completion bash = %d %s", code, ebuf.String())
	}
	// Dynamic completion of job ids asks the server.
	_, id, _ := s.hodei("", "job", "submit", "-c", "true")
	buf.Reset()
	if code := Main(s.ctx, []string{"__complete", "job", "get", "--server", s.addr, ""}, strings.NewReader(""), &buf, &ebuf); code != 0 ||
		!strings.Contains(buf.String(), strings.TrimSpace(id)) {
		t.Fatalf("completing job get = %d %q", code, buf.String())
	}
}

func TestParseQuantities(t *testing.T) {
	cpu := map[string]int64{"500m": 500, "2": 2000, "0.5": 500, "1.25": 1250, "0": 0}
	for in, want := range cpu {
		if got, err := parseCPU(in); err != nil || got != want {
			t.Errorf("parseCPU(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	mem := map[string]int64{"512Mi": 512 << 20, "4Gi": 4 << 30, "1G": 1e9, "100": 100, "1.5GiB": 3 << 29, "2k": 2000, "64mb": 64e6}
	for in, want := range mem {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1Q", "1e400", "NaN"} {
		if _, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q) accepted", bad)
		}
		if _, err := parseCPU(bad); err == nil && bad != "" {
			t.Errorf("parseCPU(%q) accepted", bad)
		}
	}
}
