package agent

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNoFingerprint is returned by JoinTokenFingerprint for a token that is
// not "hodei1.<id>.<secret>.<ca-sha256-hex>".
var ErrNoFingerprint = errors.New("not a join token with a ca fingerprint")

// JoinTokenFingerprint returns the CA fingerprint a join token carries (its
// last part), without looking at the secret. Package pki makes the tokens;
// the agent reads only this part, so it needs no more than the protocol.
func JoinTokenFingerprint(token string) (string, error) {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 4 || parts[0] != "hodei1" {
		return "", fmt.Errorf("read join token: %w", ErrNoFingerprint)
	}
	fp := parts[3]
	if len(fp) != 64 || strings.ToLower(fp) != fp {
		return "", fmt.Errorf("read join token: %w", ErrNoFingerprint)
	}
	if _, err := hex.DecodeString(fp); err != nil {
		return "", fmt.Errorf("read join token: %w", ErrNoFingerprint)
	}
	return fp, nil
}

// fingerprint is the lowercase hex SHA-256 of c's DER (pki.Fingerprint).
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// ErrFingerprintMismatch is returned by the pinned verifier when no
// certificate in the server's chain is a CA with the pinned fingerprint.
var ErrFingerprintMismatch = errors.New("server ca does not match the pinned fingerprint")

// PinnedTLS returns a client TLS config that trusts exactly the CA whose
// SHA-256 fingerprint (lowercase hex) is fp: the server must present that CA
// in its chain and a leaf it signed, valid for serverName (empty: the
// address dialled, or no name check when dialling an IP is not possible).
// now is the clock for validity checks (nil: time.Now).
func PinnedTLS(fp, serverName string, now func() time.Time) *tls.Config {
	if now == nil {
		now = time.Now
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	// Chain verification is done below against the pinned CA instead of the
	// system roots; InsecureSkipVerify only turns off the default verifier.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		return VerifyPinned(cs.PeerCertificates, fp, nameOr(serverName, cs.ServerName), now())
	}
	return cfg
}

func nameOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// VerifyPinned checks a presented chain: one of its certificates is a CA
// with fingerprint fp, and the leaf verifies against it for name (skipped
// when name is empty) at now.
func VerifyPinned(chain []*x509.Certificate, fp, name string, now time.Time) error {
	if len(chain) == 0 {
		return errors.New("verify server: no certificate presented")
	}
	var ca *x509.Certificate
	for _, c := range chain {
		if c.IsCA && fingerprint(c) == fp {
			ca = c
			break
		}
	}
	if ca == nil {
		return fmt.Errorf("verify server: %w", ErrFingerprintMismatch)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	opts := x509.VerifyOptions{Roots: roots, CurrentTime: now, DNSName: name,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if _, err := chain[0].Verify(opts); err != nil {
		return fmt.Errorf("verify server: %w", err)
	}
	return nil
}
