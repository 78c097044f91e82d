package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// ClientLifetime is the validity of a worker's client certificate. It is
// renewed over the agent stream (with the identity token) in its last third,
// so an agent that was cut off for less than that reconnects with it.
const ClientLifetime = 24 * time.Hour

// MaxCSRBytes bounds a certificate request an agent may send.
const MaxCSRBytes = 4 << 10

// WorkerURIPrefix starts the URI SAN of a worker's client certificate:
// "hodei:worker:<id>".
const WorkerURIPrefix = "hodei:worker:"

// ErrBadCSR is returned by ParseCSR for a request that is malformed, badly
// signed, too large, or not for an ECDSA P-256 key.
var ErrBadCSR = errors.New("bad certificate request")

// ParseCSR parses a DER PKCS#10 request from outside and checks its
// signature (proof that the sender holds the key) and that its key is ECDSA
// P-256. Its subject and extensions are ignored: the CA decides those. It
// never panics.
func ParseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 || len(der) > MaxCSRBytes {
		return nil, fmt.Errorf("parse csr: %d bytes, want 1..%d: %w", len(der), MaxCSRBytes, ErrBadCSR)
	}
	r, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("parse csr: %w: %w", ErrBadCSR, err)
	}
	if err := r.CheckSignature(); err != nil {
		return nil, fmt.Errorf("parse csr: signature: %w: %w", ErrBadCSR, err)
	}
	k, ok := r.PublicKey.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("parse csr: key is %T, want ECDSA P-256: %w", r.PublicKey, ErrBadCSR)
	}
	return r, nil
}

// ClientCert is a client certificate the CA issued.
type ClientCert struct {
	DER      []byte
	Serial   string // lowercase hex
	NotAfter time.Time
	// Fingerprint is the lowercase hex SHA-256 of DER.
	Fingerprint string
}

// IssueClient signs a client certificate (ExtKeyUsageClientAuth, valid
// ClientLifetime from now) for pub, an ECDSA P-256 key whose possession the
// caller has checked (ParseCSR, or a verified TLS handshake). Its common name
// is workerID and its one URI SAN "hodei:worker:<workerID>".
func (b *Bundle) IssueClient(pub *ecdsa.PublicKey, workerID string, now time.Time) (ClientCert, error) {
	if b.CAKey == nil {
		return ClientCert{}, errors.New("issue client certificate: no ca key")
	}
	if pub == nil || pub.Curve != elliptic.P256() {
		return ClientCert{}, errors.New("issue client certificate: key is not ECDSA P-256")
	}
	if workerID == "" || strings.ContainsAny(workerID, ":/ ") {
		return ClientCert{}, fmt.Errorf("issue client certificate: worker id %q is empty or not a plain id", workerID)
	}
	sn, err := serial()
	if err != nil {
		return ClientCert{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: workerID, Organization: []string{"Hodei workers"}},
		URIs:         []*url.URL{{Scheme: "hodei", Opaque: "worker:" + workerID}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(ClientLifetime).Truncate(time.Second),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, b.CA, pub, b.CAKey)
	if err != nil {
		return ClientCert{}, fmt.Errorf("issue client certificate: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return ClientCert{}, fmt.Errorf("issue client certificate: %w", err)
	}
	return ClientCert{DER: der, Serial: fmt.Sprintf("%x", c.SerialNumber), NotAfter: c.NotAfter, Fingerprint: Fingerprint(c)}, nil
}

// WorkerID returns the worker id a client certificate was issued to (its
// "hodei:worker:<id>" URI SAN), or "" for any other certificate. The caller
// has verified c against the CA.
func WorkerID(c *x509.Certificate) string {
	if c == nil || len(c.URIs) != 1 {
		return ""
	}
	u := c.URIs[0]
	id, ok := strings.CutPrefix(u.Scheme+":"+u.Opaque, WorkerURIPrefix)
	if !ok || id == "" || u.Host != "" || u.Path != "" || id != c.Subject.CommonName {
		return ""
	}
	return id
}
