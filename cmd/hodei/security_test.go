package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/pki"
)

func TestCLIRefusedWithoutTokenWithWrongRoleOrWrongCA(t *testing.T) {
	s := startCLIServer(t) // sets HODEI_CA and HODEI_TOKEN (admin)
	run := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := Main(s.ctx, append(args, "--server", s.addr), strings.NewReader(""), &out, &errOut)
		return code, errOut.String()
	}
	if code, errOut := run("job", "ls"); code != 0 {
		t.Fatalf("job ls as admin = %d %q", code, errOut)
	}
	t.Setenv("HODEI_TOKEN", "")
	if code, errOut := run("job", "ls"); code != exitFailure || !strings.Contains(errOut, "unauthenticated") || !strings.Contains(errOut, "HODEI_TOKEN") {
		t.Fatalf("job ls without a token = %d %q", code, errOut)
	}
	// The token store beside the test CA is the server's.
	tokens, err := auth.Open(filepath.Dir(os.Getenv("HODEI_CA")), nil)
	if err != nil {
		t.Fatal(err)
	}
	viewer, _, err := tokens.CreateAPI(auth.Viewer, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if code, errOut := run("job", "ls", "--token", viewer); code != 0 {
		t.Fatalf("job ls as viewer = %d %q", code, errOut)
	}
	if code, errOut := run("job", "submit", "-c", "true", "--token", viewer); code != exitFailure || !strings.Contains(errOut, "permission denied") {
		t.Fatalf("job submit as viewer = %d %q", code, errOut)
	}
	other, err := pki.LoadOrCreate(t.TempDir(), pki.DefaultSANs(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(otherCA, other.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, errOut := run("job", "ls", "--token", viewer, "--ca", otherCA); code != exitFailure || !strings.Contains(errOut, "certificate") {
		t.Fatalf("job ls trusting another CA = %d %q", code, errOut)
	}
	if code, errOut := run("job", "ls", "--token", viewer, "--insecure-plaintext"); code != exitFailure {
		t.Fatalf("job ls in plaintext against a TLS server = %d %q", code, errOut)
	}
}

func TestTokenCommands(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := Main(t.Context(), append(args, "--data", dir), strings.NewReader(""), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, errOut := run("token", "create", "--agent", "--ttl", "1h", "--uses", "2")
	if code != 0 {
		t.Fatalf("token create --agent = %d %q", code, errOut)
	}
	jt, err := pki.ParseJoinToken(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("token create --agent printed %q: %v", out, err)
	}
	b, err := pki.LoadOrCreate(dir, pki.DefaultSANs(), time.Now())
	if err != nil || jt.CAFingerprint != b.Fingerprint() {
		t.Fatalf("join token fingerprint %s, data dir CA %s (%v)", jt.CAFingerprint, b.Fingerprint(), err)
	}
	code, out, _ = run("token", "create", "--role", "viewer")
	if _, _, err := auth.ParseAPIToken(strings.TrimSpace(out)); code != 0 || err != nil {
		t.Fatalf("token create --role viewer = %d %q %v", code, out, err)
	}
	if code, _, _ := run("token", "create", "--role", "root"); code != exitUsage {
		t.Fatalf("token create --role root = %d, want usage", code)
	}
	if code, _, _ := run("token", "create"); code != exitUsage {
		t.Fatalf("token create without --agent or --role = %d, want usage", code)
	}
	if code, _, errOut := run("token", "revoke", jt.ID); code != 0 {
		t.Fatalf("token revoke = %d %q", code, errOut)
	}
	code, out, _ = run("token", "list")
	if code != 0 || !strings.Contains(out, jt.ID) || !strings.Contains(out, "revoked") || strings.Contains(out, jt.Secret) {
		t.Fatalf("token list = %d\n%s", code, out)
	}
}

func TestWorkerRevokeCommand(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := Main(t.Context(), append(args, "--data", dir), strings.NewReader(""), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	if code, out, errOut := run("worker", "revoke", "w-123", "--reason", "laptop stolen"); code != 0 || !strings.Contains(out, "revoked worker w-123") {
		t.Fatalf("worker revoke = %d %q %q", code, out, errOut)
	}
	if code, _, _ := run("worker", "revoke"); code != exitUsage {
		t.Fatalf("worker revoke without an id = %d, want usage", code)
	}
	tokens, err := auth.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if by, reason, revoked, err := tokens.WorkerRevocation("w-123"); err != nil || !revoked || by != "admin" || reason != "laptop stolen" {
		t.Fatalf("WorkerRevocation() = %q %q %v", by, reason, revoked)
	}
}
