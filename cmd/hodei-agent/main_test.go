package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/agent"
	"github.com/hodei-jobs/hodei/agent/agenttest"
	"github.com/hodei-jobs/hodei/hwp/hwppb"
	"github.com/hodei-jobs/hodei/internal/syncbuf"
)

type run struct {
	srv    *agenttest.Server
	sig    chan os.Signal
	code   chan int
	stderr *syncbuf.Buffer
}

// startMain runs Main against a fake server on a loopback port 0, with
// configuration from the environment as an operator would set it.
func startMain(t *testing.T, extra ...string) *run {
	t.Helper()
	srv := agenttest.New(agenttest.Options{HeartbeatInterval: 50 * time.Millisecond, Token: "join-secret"})
	if err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	env := map[string]string{
		"HODEI_SERVER":             srv.Addr(),
		"HODEI_TOKEN":              "join-secret",
		"HODEI_INSECURE_PLAINTEXT": "true",
		"HODEI_AGENT_NAME":         "cmd-agent",
		"HODEI_LABELS":             "os=linux,pool=test",
		"HODEI_SLOTS":              "2",
		"HODEI_WORK_DIR":           t.TempDir(),
	}
	r := &run{srv: srv, sig: make(chan os.Signal, 2), code: make(chan int, 1), stderr: &syncbuf.Buffer{}}
	go func() {
		r.code <- Main(context.Background(), extra, func(k string) string { return env[k] }, r.stderr, r.sig)
	}()
	return r
}

func (r *run) exit(t *testing.T) int {
	t.Helper()
	select {
	case c := <-r.code:
		return c
	case <-time.After(30 * time.Second):
		t.Fatalf("Main did not return; stderr:\n%s", r.stderr)
		return -1
	}
}

func wait(t *testing.T, srv *agenttest.Server, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.WaitFor(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func TestMainRunsJobAndDrainsOnSignal(t *testing.T) {
	r := startMain(t, "-log-level", "debug")
	wait(t, r.srv, "registration", func() bool { return r.srv.Connected("cmd-agent") })
	h := r.srv.Hellos()[0]
	if h.Labels["pool"] != "test" || h.Capacity.GetSlots() != 2 || h.Credentials.GetJoinToken() != "join-secret" {
		t.Fatalf("Hello = %v", h)
	}
	if err := r.srv.Assign("cmd-agent", &hwppb.Assign{JobId: "j1", Attempt: 1, Script: `printf '\033[32mok\033[0m'`}); err != nil {
		t.Fatal(err)
	}
	wait(t, r.srv, "job finished", func() bool { f, _ := r.srv.Finished("j1", 1); return f != nil })
	if got := string(r.srv.Log("j1", 1)); got != "\x1b[32mok\x1b[0m" {
		t.Fatalf("log = %q", got)
	}
	r.sig <- syscall.SIGTERM
	if c := r.exit(t); c != exitOK {
		t.Fatalf("Main() = %d after SIGTERM, want 0; stderr:\n%s", c, r.stderr)
	}
	if g := r.srv.Goodbyes(); len(g) != 1 || g[0].Reason != hwppb.Goodbye_DRAINED {
		t.Fatalf("Goodbye = %v, want DRAINED", g)
	}
	if strings.Contains(r.stderr.String(), "join-secret") {
		t.Fatalf("stderr shows the token:\n%s", r.stderr)
	}
}

func TestSecondSignalCancelsJobs(t *testing.T) {
	r := startMain(t)
	wait(t, r.srv, "registration", func() bool { return r.srv.Connected("cmd-agent") })
	if err := r.srv.Assign("cmd-agent", &hwppb.Assign{JobId: "long", Attempt: 1, Script: `echo up; sleep 1000`}); err != nil {
		t.Fatal(err)
	}
	wait(t, r.srv, "job output", func() bool { return strings.Contains(string(r.srv.Log("long", 1)), "up") })
	r.sig <- syscall.SIGTERM
	wait(t, r.srv, "draining notice", func() bool { return len(r.srv.Drainings()) == 1 })
	r.sig <- syscall.SIGINT
	if c := r.exit(t); c != exitOK {
		t.Fatalf("Main() = %d, want 0; stderr:\n%s", c, r.stderr)
	}
	f, _ := r.srv.Finished("long", 1)
	if f == nil || f.Reason != hwppb.FinishReason_AGENT_STOPPED || f.Signal != "SIGTERM" {
		t.Fatalf("JobFinished = %v, want AGENT_STOPPED by SIGTERM", f)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"-server", "x:1", "-slots", "many"}, {"-server", "x:1", "-labels", "novalue"}, {"-server", "x:1", "extra"}} {
		var stderr syncbuf.Buffer
		if c := Main(context.Background(), args, func(string) string { return "" }, &stderr, nil); c != exitUsage {
			t.Errorf("Main(%q) = %d, want %d; stderr:\n%s", args, c, exitUsage, stderr.String())
		}
	}
}

func TestRefusedTokenExitsWithFailure(t *testing.T) {
	r := startMain(t, "-token", "wrong")
	if c := r.exit(t); c != exitFailure {
		t.Fatalf("Main() = %d, want %d", c, exitFailure)
	}
	if !strings.Contains(r.stderr.String(), "UNAUTHENTICATED") {
		t.Fatalf("stderr does not say why:\n%s", r.stderr)
	}
}

func TestTLSIsTheDefaultAndNeedsATrustAnchor(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	fp := strings.Repeat("ab", 32)
	token := "hodei1.0123456789abcdef." + strings.Repeat("c", 64) + "." + fp
	cfg, _, err := parse([]string{"-server", "127.0.0.1:7070", "-token", token}, env(nil), io.Discard)
	if err != nil || cfg.TLS == nil || cfg.TLS.VerifyConnection == nil || cfg.TLS.ServerName != "127.0.0.1" {
		t.Fatalf("parse(join token) = TLS %+v, %v; want a pinned TLS config", cfg.TLS, err)
	}
	if _, _, err := parse([]string{"-server", "127.0.0.1:7070", "-token", "static"}, env(nil), io.Discard); err == nil ||
		!strings.Contains(err.Error(), "fingerprint") {
		t.Fatalf("parse(token without fingerprint, no -ca-file) = %v, want an error naming the fingerprint", err)
	}
	var warn bytes.Buffer
	cfg, _, err = parse([]string{"-server", "h:1", "-token", "static"}, env(map[string]string{"HODEI_INSECURE_PLAINTEXT": "true"}), &warn)
	if err != nil || cfg.TLS != nil || !strings.Contains(warn.String(), "WARNING") {
		t.Fatalf("parse(HODEI_INSECURE_PLAINTEXT) = TLS %v, %v, warning %q", cfg.TLS, err, warn.String())
	}
	if _, _, err := parse([]string{"-server", "h:1", "-ca-file", "/nonexistent.pem"}, env(nil), io.Discard); err == nil {
		t.Fatal("parse(-ca-file missing) = nil, want an error")
	}
}

// A restarted agent with no token trusts the CA its saved identity pins.
func TestNoTokenTrustsTheSavedIdentity(t *testing.T) {
	env := func(string) string { return "" }
	workDir := t.TempDir()
	if _, _, err := parse([]string{"-server", "127.0.0.1:7070", "-work-dir", workDir}, env, io.Discard); err == nil {
		t.Fatal("parse(no token, nothing saved) = nil, want an error")
	}
	dir := filepath.Join(workDir, agent.IdentityDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	id := `{"worker_id":"w-1","ca_sha256":"` + strings.Repeat("ab", 32) + `"}`
	if err := os.WriteFile(filepath.Join(dir, "identity.json"), []byte(id), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := parse([]string{"-server", "127.0.0.1:7070", "-work-dir", workDir}, env, io.Discard)
	if err != nil || cfg.TLS == nil || cfg.TLS.VerifyConnection == nil {
		t.Fatalf("parse(no token, saved identity) = TLS %+v, %v; want a pinned TLS config", cfg.TLS, err)
	}
}
