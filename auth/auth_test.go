package auth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/api"
	"github.com/hodei-jobs/hodei/auth"
)

// clock is an injected clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func open(t *testing.T) (*auth.Store, *clock, string) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	s, err := auth.Open(dir, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	return s, clk, dir
}

var fp = strings.Repeat("0f", 32)

func TestAuthenticateRejections(t *testing.T) {
	s, clk, _ := open(t)
	ctx := context.Background()
	viewer, _, err := s.CreateAPI(auth.Viewer, "v", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	operator, _, err := s.CreateAPI(auth.Operator, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	admin, at, err := s.CreateAPI(auth.Admin, "root", 0)
	if err != nil {
		t.Fatal(err)
	}
	join, _, err := s.CreateJoin(fp, "", time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	id, _, _ := strings.Cut(strings.TrimPrefix(viewer, "hodeiapi1."), ".")
	wrongSecret := "hodeiapi1." + id + "." + strings.Repeat("0", 64)

	for _, tc := range []struct {
		name, op, cred string
		want           error
		reason         error
	}{
		{"no token", "ListJobs", "", api.ErrUnauthenticated, auth.ErrNoToken},
		{"garbage", "ListJobs", "Bearer x", api.ErrUnauthenticated, auth.ErrMalformed},
		{"wrong secret", "ListJobs", wrongSecret, api.ErrUnauthenticated, auth.ErrUnknownToken},
		{"join token for the API", "ListJobs", join.String(), api.ErrUnauthenticated, auth.ErrMalformed},
		{"viewer submits", "SubmitJobs", viewer, api.ErrPermissionDenied, nil},
		{"viewer cancels", "CancelJob", viewer, api.ErrPermissionDenied, nil},
		{"operator sets a secret", "SetSecret", operator, api.ErrPermissionDenied, nil},
		{"operator lists secrets", "ListSecrets", operator, api.ErrPermissionDenied, nil},
		{"viewer on an unknown op", "FutureOp", viewer, api.ErrPermissionDenied, nil},
		{"operator on an unknown op", "FutureOp", operator, api.ErrPermissionDenied, nil},
	} {
		_, err := s.Authenticate(ctx, tc.op, tc.cred)
		if !errors.Is(err, tc.want) || (tc.reason != nil && !errors.Is(err, tc.reason)) {
			t.Errorf("%s: Authenticate(%s) = %v, want %v (%v)", tc.name, tc.op, err, tc.want, tc.reason)
		}
	}
	for _, ok := range []struct{ op, cred string }{{"ListJobs", viewer}, {"WatchLog", viewer}, {"SubmitJobs", operator},
		{"DrainWorker", operator}, {"SetSecret", admin}, {"FutureOp", admin}} {
		if _, err := s.Authenticate(ctx, ok.op, ok.cred); err != nil {
			t.Errorf("Authenticate(%s) = %v, want nil", ok.op, err)
		}
	}
	c, err := s.Authenticate(ctx, "GetJob", admin)
	if err != nil || c != (api.Caller{Name: "root", Role: "admin"}) {
		t.Errorf("Authenticate(admin) = %+v, %v", c, err)
	}

	clk.add(time.Hour)
	if _, err := s.Authenticate(ctx, "ListJobs", viewer); !errors.Is(err, auth.ErrExpired) || !errors.Is(err, api.ErrUnauthenticated) {
		t.Errorf("expired: Authenticate = %v, want ErrExpired", err)
	}
	if err := s.Revoke(at.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, "ListJobs", admin); !errors.Is(err, auth.ErrRevoked) {
		t.Errorf("revoked: Authenticate = %v, want ErrRevoked", err)
	}
	if err := s.Revoke("0000000000000000"); !errors.Is(err, auth.ErrUnknownToken) {
		t.Errorf("Revoke(unknown) = %v, want ErrUnknownToken", err)
	}
}

func TestJoinTokenUsesExpiryRevocationAndWorkerBinding(t *testing.T) {
	s, clk, dir := open(t)
	jt, tok, err := s.CreateJoin(fp, "rack-1", time.Hour, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"w1", "w2"} {
		id, err := s.Join(jt.String(), "")
		if err != nil || id != tok.ID {
			t.Fatalf("Join(new agent) = %q, %v", id, err)
		}
		if err := s.Enrolled(id, w, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Join(jt.String(), ""); !errors.Is(err, auth.ErrUsedUp) {
		t.Errorf("Join(third agent) = %v, want ErrUsedUp", err)
	}
	if err := s.Enrolled(tok.ID, "w3", ""); !errors.Is(err, auth.ErrUsedUp) {
		t.Errorf("Enrolled(third worker) = %v, want ErrUsedUp", err)
	}
	// Enrolled workers reconnect without using the token up, even after
	// it expired; another worker's id is not theirs to claim.
	clk.add(2 * time.Hour)
	if _, err := s.Join(jt.String(), "w1"); err != nil {
		t.Errorf("Join(enrolled w1, after expiry) = %v, want nil", err)
	}
	if _, err := s.Join(jt.String(), "someone-else"); !errors.Is(err, auth.ErrUnknownToken) {
		t.Errorf("Join(claiming a foreign worker id) = %v, want ErrUnknownToken", err)
	}
	fresh, _, err := s.CreateJoin(fp, "", time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Join(fresh.String(), "w1"); err == nil {
		t.Error("Join(w1 with a token it did not enrol with) = nil, want an error")
	}
	expired, _, err := s.CreateJoin(fp, "", time.Minute, 1)
	if err != nil {
		t.Fatal(err)
	}
	clk.add(time.Minute)
	if _, err := s.Join(expired.String(), ""); !errors.Is(err, auth.ErrExpired) {
		t.Errorf("Join(expired) = %v, want ErrExpired", err)
	}
	if err := s.Revoke(tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Join(jt.String(), "w1"); !errors.Is(err, auth.ErrRevoked) {
		t.Errorf("Join(revoked, enrolled worker) = %v, want ErrRevoked", err)
	}
	api, _, err := s.CreateAPI(auth.Admin, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Join(api, ""); !errors.Is(err, auth.ErrMalformed) {
		t.Errorf("Join(api token) = %v, want ErrMalformed", err)
	}
	wrong := jt
	wrong.Secret = strings.Repeat("1", 64)
	if _, err := s.Join(wrong.String(), ""); !errors.Is(err, auth.ErrUnknownToken) {
		t.Errorf("Join(wrong secret) = %v, want ErrUnknownToken", err)
	}
	// The file keeps hashes, never secrets, and is private.
	b, err := os.ReadFile(filepath.Join(dir, auth.TokensFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), jt.Secret) || strings.Contains(string(b), strings.Split(api, ".")[2]) {
		t.Error("tokens.json contains a secret")
	}
	if fi, _ := os.Stat(filepath.Join(dir, auth.TokensFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("tokens.json mode = %v, want 0600", fi.Mode().Perm())
	}
}

// A second store on the same dir (the CLI beside the server) sees
// revocations at once.
func TestRevocationFromAnotherProcessIsSeen(t *testing.T) {
	s, _, dir := open(t)
	tok, tt, err := s.CreateAPI(auth.Viewer, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyAPI(tok); err != nil {
		t.Fatal(err)
	}
	other, err := auth.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Revoke(tt.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyAPI(tok); !errors.Is(err, auth.ErrRevoked) {
		t.Errorf("VerifyAPI after a revocation by another store = %v, want ErrRevoked", err)
	}
}

func TestBootstrapCreatesOneAdminToken(t *testing.T) {
	s, _, dir := open(t)
	tok, err := s.Bootstrap()
	if err != nil || tok == "" {
		t.Fatalf("Bootstrap() = %q, %v", tok, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, auth.AdminTokenFile))
	if err != nil || strings.TrimSpace(string(b)) != tok {
		t.Fatalf("admin.token = %q, %v", b, err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, auth.AdminTokenFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("admin.token mode = %v, want 0600", fi.Mode().Perm())
	}
	if again, err := s.Bootstrap(); again != "" || err != nil {
		t.Errorf("second Bootstrap() = %q, %v, want none", again, err)
	}
	if c, err := s.Authenticate(context.Background(), "SetSecret", tok); err != nil || c.Role != "admin" {
		t.Errorf("Authenticate(bootstrap token) = %+v, %v", c, err)
	}
}

func FuzzParseAPIToken(f *testing.F) {
	f.Add("hodeiapi1.0123456789abcdef." + strings.Repeat("a", 64))
	f.Add("hodeiapi1..")
	f.Add("Bearer ")
	f.Fuzz(func(t *testing.T, s string) {
		id, sec, err := auth.ParseAPIToken(s)
		if err != nil {
			if !errors.Is(err, auth.ErrMalformed) {
				t.Fatalf("ParseAPIToken(%q) = %v, want ErrMalformed", s, err)
			}
			return
		}
		if "hodeiapi1."+id+"."+sec != s {
			t.Fatalf("ParseAPIToken(%q) = %q, %q: not the input's parts", s, id, sec)
		}
	})
}

func TestIdentityTokens(t *testing.T) {
	s, clk, dir := open(t)
	ids, err := auth.OpenIdentities(dir, clk.now, s.WorkerRevoked)
	if err != nil {
		t.Fatal(err)
	}
	tok, exp, err := ids.Issue("w1")
	if err != nil || exp.Sub(clk.now()) != auth.IdentityTTL {
		t.Fatalf("Issue() = %v, %v; want 15 minutes", exp, err)
	}
	if w, _, err := ids.Verify(tok); err != nil || w != "w1" {
		t.Fatalf("Verify() = %q, %v", w, err)
	}
	// Another server's key, a tampered payload, alg none: all refused.
	other, err := auth.OpenIdentities(t.TempDir(), clk.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _, _ := other.Issue("w1")
	parts := strings.Split(tok, ".")
	forged, _, _ := other.Issue("w2")
	fparts := strings.Split(forged, ".")
	for name, bad := range map[string]string{
		"another key":     foreign,
		"swapped payload": parts[0] + "." + fparts[1] + "." + parts[2],
		"alg none":        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + ".",
		"garbage":         "x.y.z",
		"empty":           "",
		"missing a part":  parts[0] + "." + parts[1],
	} {
		if _, _, err := ids.Verify(bad); !errors.Is(err, auth.ErrBadIdentity) {
			t.Errorf("%s: Verify() = %v, want ErrBadIdentity", name, err)
		}
	}
	// Renew: nothing to do early, a fresh token in the last 5 minutes.
	if fresh, _, err := ids.Renew(tok); err != nil || fresh != "" {
		t.Fatalf("early Renew() = %q, %v; want none", fresh, err)
	}
	clk.add(11 * time.Minute)
	fresh, exp2, err := ids.Renew(tok)
	if err != nil || fresh == "" || !exp2.After(exp) {
		t.Fatalf("Renew() near expiry = %q, %v, %v; want a later token", fresh, exp2, err)
	}
	clk.add(5 * time.Minute) // the first token is past its expiry, the fresh one is not
	if _, _, err := ids.Verify(tok); !errors.Is(err, auth.ErrExpired) {
		t.Errorf("Verify(old token after expiry) = %v, want ErrExpired", err)
	}
	if w, _, err := ids.Verify(fresh); err != nil || w != "w1" {
		t.Errorf("Verify(renewed token) = %q, %v", w, err)
	}
	// Revoking the join token w1 enrolled with revokes its identity.
	jt, tt, err := s.CreateJoin(fp, "", time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Join(jt.String(), ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Enrolled(tt.ID, "w1", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(tt.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ids.Verify(fresh); !errors.Is(err, auth.ErrRevoked) {
		t.Errorf("Verify(identity of a revoked join token's worker) = %v, want ErrRevoked", err)
	}
	if _, _, err := ids.Renew(fresh); !errors.Is(err, auth.ErrRevoked) {
		t.Errorf("Renew(revoked) = %v, want ErrRevoked", err)
	}
}

func FuzzVerifyIdentity(f *testing.F) {
	ids, err := auth.OpenIdentities(f.TempDir(), nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	tok, _, _ := ids.Issue("w1")
	f.Add(tok)
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		w, _, err := ids.Verify(s)
		if err == nil && s != tok && w == "" {
			t.Fatalf("Verify(%q) = empty worker, nil", s)
		}
	})
}

func TestRevokeWorker(t *testing.T) {
	s, _, dir := open(t)
	jt, tok, err := s.CreateJoin(strings.Repeat("f", 64), "", time.Hour, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Join(jt.String(), ""); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"w-1", "w-2"} {
		if err := s.Enrolled(tok.ID, w, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, revoked, err := s.WorkerRevocation("w-1"); err != nil || revoked {
		t.Fatal("WorkerRevocation(w-1) before revoking = revoked")
	}
	if err := s.RevokeWorker("w-1", "ops", "stolen"); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeWorker("w-1", "eve", "again"); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeWorker("bad id", "ops", ""); err == nil {
		t.Fatal("RevokeWorker(bad id) = nil, want an error")
	}
	// Another process sees it; the first record stands; tokens are kept.
	other, err := auth.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if by, reason, revoked, err := other.WorkerRevocation("w-1"); err != nil || !revoked || by != "ops" || reason != "stolen" {
		t.Fatalf("WorkerRevocation(w-1) = %q %q %v, want ops stolen true", by, reason, revoked)
	}
	if other.WorkerRevoked("w-2") {
		t.Fatal("WorkerRevoked(w-2) = true, want only w-1 revoked")
	}
	if ts, err := other.List(); err != nil || len(ts) != 1 || ts[0].Uses() != 2 {
		t.Fatalf("List() after revoking a worker = %+v, %v", ts, err)
	}
	// Revoking the join token revokes the workers it admitted.
	if err := s.Revoke(tok.ID); err != nil {
		t.Fatal(err)
	}
	if by, reason, revoked, err := other.WorkerRevocation("w-2"); err != nil || !revoked || by == "" || !strings.Contains(reason, tok.ID) {
		t.Fatalf("WorkerRevocation(w-2) after revoking its token = %q %q %v", by, reason, revoked)
	}
	if rs, err := other.RevokedWorkers(); err != nil || len(rs) != 1 || rs[0].WorkerID != "w-1" {
		t.Fatalf("RevokedWorkers() = %+v, %v", rs, err)
	}
}
