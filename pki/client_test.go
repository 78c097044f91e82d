package pki_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"

	"github.com/hodei-jobs/hodei/pki"
)

func csr(t testing.TB, key any) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "whoever"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestIssueClientForACSR(t *testing.T) {
	b, err := pki.LoadOrCreate(t.TempDir(), pki.DefaultSANs(), t0)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pki.ParseCSR(csr(t, key))
	if err != nil {
		t.Fatalf("ParseCSR() = %v", err)
	}
	cc, err := b.IssueClient(r.PublicKey.(*ecdsa.PublicKey), "w-1", t0)
	if err != nil {
		t.Fatalf("IssueClient() = %v", err)
	}
	c, err := x509.ParseCertificate(cc.DER)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(b.CA)
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("Verify(client auth) = %v", err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: t0}); err == nil {
		t.Fatal("Verify(server auth) = nil, want a client certificate to be no server certificate")
	}
	if got := pki.WorkerID(c); got != "w-1" {
		t.Fatalf("WorkerID() = %q, want w-1", got)
	}
	if !cc.NotAfter.Equal(t0.Add(pki.ClientLifetime)) || cc.Serial == "" || cc.Fingerprint != pki.Fingerprint(c) {
		t.Fatalf("IssueClient() = %+v, want not after %v", cc, t0.Add(pki.ClientLifetime))
	}
	if got := pki.WorkerID(b.Server.Leaf); got != "" {
		t.Fatalf("WorkerID(server certificate) = %q, want none", got)
	}
	if _, err := b.IssueClient(&key.PublicKey, "a:b", t0); err == nil {
		t.Fatal("IssueClient(worker id with a colon) = nil, want an error")
	}
}

func TestParseCSRRejects(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tampered := csr(t, p256)
	tampered[len(tampered)-1] ^= 1
	for name, der := range map[string][]byte{
		"empty": nil, "garbage": []byte("not a csr"), "p384": csr(t, p384), "ed25519": csr(t, ed),
		"bad signature": tampered, "too large": make([]byte, pki.MaxCSRBytes+1),
	} {
		if _, err := pki.ParseCSR(der); !errors.Is(err, pki.ErrBadCSR) {
			t.Errorf("ParseCSR(%s) = %v, want %v", name, err, pki.ErrBadCSR)
		}
	}
}

func FuzzParseCSR(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	good := csr(f, key)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, der []byte) {
		r, err := pki.ParseCSR(der)
		if err != nil {
			if !errors.Is(err, pki.ErrBadCSR) {
				t.Fatalf("ParseCSR() = %v, want it to wrap ErrBadCSR", err)
			}
			return
		}
		if _, ok := r.PublicKey.(*ecdsa.PublicKey); !ok {
			t.Fatalf("ParseCSR() accepted a %T key", r.PublicKey)
		}
	})
}
