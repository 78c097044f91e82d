package pki_test

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/agent"
	"github.com/hodei-jobs/hodei/pki"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestLoadOrCreateMakesFilesOnceWithMode0600(t *testing.T) {
	dir := t.TempDir()
	b, err := pki.LoadOrCreate(dir, pki.DefaultSANs("hodei.example"), t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{pki.CAFile, pki.CAKeyFile, pki.ServerFile, pki.ServerKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", f, fi.Mode().Perm())
		}
	}
	if !b.CA.IsCA || b.CA.NotAfter.Sub(t0) < 9*365*24*time.Hour {
		t.Errorf("CA = IsCA %v NotAfter %v, want a CA for 10 years", b.CA.IsCA, b.CA.NotAfter)
	}
	leaf := b.Server.Leaf
	if err := leaf.VerifyHostname("hodei.example"); err != nil {
		t.Errorf("VerifyHostname(extra SAN) = %v", err)
	}
	for _, h := range []string{"127.0.0.1", "::1", "localhost"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("VerifyHostname(%s) = %v", h, err)
		}
	}
	again, err := pki.LoadOrCreate(dir, pki.DefaultSANs("hodei.example"), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if again.Fingerprint() != b.Fingerprint() || !again.Server.Leaf.Equal(leaf) {
		t.Error("second LoadOrCreate made new certificates, want the stored ones")
	}
}

func TestServerCertificateIsRenewedNearExpiryAndForNewSANs(t *testing.T) {
	dir := t.TempDir()
	b, err := pki.LoadOrCreate(dir, pki.DefaultSANs(), t0)
	if err != nil {
		t.Fatal(err)
	}
	late := b.Server.Leaf.NotAfter.Add(-10 * 24 * time.Hour)
	r, err := pki.LoadOrCreate(dir, pki.DefaultSANs(), late)
	if err != nil {
		t.Fatal(err)
	}
	if r.Server.Leaf.Equal(b.Server.Leaf) || r.Fingerprint() != b.Fingerprint() {
		t.Error("near expiry: want a new server certificate from the same CA")
	}
	n, err := pki.LoadOrCreate(dir, pki.DefaultSANs("new.example"), late)
	if err != nil {
		t.Fatal(err)
	}
	if n.Server.Leaf.VerifyHostname("new.example") != nil {
		t.Error("new SAN: server certificate was not reissued")
	}
}

// serve runs a TLS listener with b's server certificate; each connection
// completes its handshake and closes.
func serve(t *testing.T, b *pki.Bundle) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", b.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func TestPinnedTLSTrustsExactlyThePinnedCA(t *testing.T) {
	b, err := pki.LoadOrCreate(t.TempDir(), pki.DefaultSANs(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.LoadOrCreate(t.TempDir(), pki.DefaultSANs(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, b)
	host, _, _ := net.SplitHostPort(addr)
	c, err := tls.Dial("tcp", addr, agent.PinnedTLS(b.Fingerprint(), host, nil))
	if err != nil {
		t.Fatalf("Dial(right fingerprint) = %v", err)
	}
	c.Close()
	_, err = tls.Dial("tcp", addr, agent.PinnedTLS(other.Fingerprint(), host, nil))
	if !errors.Is(err, agent.ErrFingerprintMismatch) {
		t.Fatalf("Dial(other CA's fingerprint) = %v, want %v", err, agent.ErrFingerprintMismatch)
	}
	_, err = tls.Dial("tcp", addr, agent.PinnedTLS(b.Fingerprint(), "wrong.example", nil))
	if err == nil || !strings.Contains(err.Error(), "wrong.example") {
		t.Fatalf("Dial(wrong name) = %v, want a name error", err)
	}
	expired := func() time.Time { return time.Now().Add(20 * 365 * 24 * time.Hour) }
	if _, err = tls.Dial("tcp", addr, agent.PinnedTLS(b.Fingerprint(), host, expired)); err == nil {
		t.Fatal("Dial(after expiry) = nil, want an expiry error")
	}
	if _, err = tls.Dial("tcp", addr, other.ClientTLS()); err == nil {
		t.Fatal("Dial(trusting another CA) = nil, want an error")
	}
}

func TestJoinTokenRoundTrip(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	jt, err := pki.NewJoinToken(fp)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pki.ParseJoinToken(jt.String())
	if err != nil || got != jt {
		t.Fatalf("ParseJoinToken(%q) = %+v, %v, want %+v", jt.String(), got, err, jt)
	}
	for _, bad := range []string{"", "hodei1", "hodei2." + jt.ID + "." + jt.Secret + "." + fp,
		"hodei1." + jt.ID + "." + jt.Secret, "hodei1." + jt.ID + "." + strings.ToUpper(jt.Secret) + "." + fp,
		"hodei1." + jt.ID + "x." + jt.Secret + "." + fp, jt.String() + ".x"} {
		if _, err := pki.ParseJoinToken(bad); !errors.Is(err, pki.ErrMalformedToken) {
			t.Errorf("ParseJoinToken(%q) = %v, want ErrMalformedToken", bad, err)
		}
		if _, err := pki.ParseJoinToken(bad); err != nil && strings.Contains(err.Error(), jt.Secret) {
			t.Errorf("ParseJoinToken error %q echoes the secret", err)
		}
	}
}

func FuzzParseJoinToken(f *testing.F) {
	f.Add("hodei1.0123456789abcdef." + strings.Repeat("a", 64) + "." + strings.Repeat("b", 64))
	f.Add("hodei1...")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		jt, err := pki.ParseJoinToken(s)
		if err != nil {
			if !errors.Is(err, pki.ErrMalformedToken) {
				t.Fatalf("ParseJoinToken(%q) = %v, want ErrMalformedToken", s, err)
			}
			return
		}
		if again, err := pki.ParseJoinToken(jt.String()); err != nil || again != jt {
			t.Fatalf("round trip of %q = %+v, %v", s, again, err)
		}
		if fp, err := agent.JoinTokenFingerprint(s); err != nil || fp != jt.CAFingerprint {
			t.Fatalf("agent.JoinTokenFingerprint(%q) = %q, %v, want %q", s, fp, err, jt.CAFingerprint)
		}
	})
}
