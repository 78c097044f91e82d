package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hodei-jobs/hodei/internal/atomicfile"
)

// The agent's identity lives in WorkDir/identity (mode 0700), every file
// mode 0600 and replaced atomically (a synced temporary file, then a rename):
//
//	identity.json  worker id, identity token and its expiry, the CA fingerprint
//	key.pem        the agent's private key (ECDSA P-256), made on first start
//	cert.pem       the client certificate the server signed for that key
//
// A restarted agent reads them and reconnects as the same worker over mutual
// TLS with no join token: the certificate proves who it is, and the pinned
// CA fingerprint says which server to trust.
const (
	IdentityDir      = "identity"
	identityJSONFile = "identity.json"
	keyFile          = "key.pem"
	certFile         = "cert.pem"
)

// Identity is the part of the agent's persisted identity that is not a key
// or certificate.
type Identity struct {
	WorkerID string `json:"worker_id,omitempty"`
	// Token is the identity token (JWT) and TokenExpires its expiry.
	Token        string    `json:"identity_token,omitempty"`
	TokenExpires time.Time `json:"identity_expires_at,omitzero"`
	// CAFingerprint is the SHA-256 (lowercase hex) of the server's CA, from
	// the join token the agent enrolled with.
	CAFingerprint string `json:"ca_sha256,omitempty"`
}

// LoadIdentity reads the identity persisted in workDir (a zero Identity and
// no error when there is none).
func LoadIdentity(workDir string) (Identity, error) {
	var id Identity
	b, err := os.ReadFile(filepath.Join(workDir, IdentityDir, identityJSONFile))
	if errors.Is(err, os.ErrNotExist) {
		return id, nil
	}
	if err != nil {
		return id, fmt.Errorf("load identity: %w", err)
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return Identity{}, fmt.Errorf("load identity %s: %w", filepath.Join(workDir, IdentityDir, identityJSONFile), err)
	}
	return id, nil
}

// loadKey returns the agent's key in dir, making and saving one if there is
// none.
func loadKey(dir string) (*ecdsa.PrivateKey, error) {
	p := filepath.Join(dir, keyFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("create agent key: %w", err)
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, fmt.Errorf("create agent key: %w", err)
		}
		if err := atomicfile.Write(p, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("create agent key: %w", err)
		}
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load agent key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("load agent key: no PEM block in %s", p)
	}
	k, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load agent key %s: %w", p, err)
	}
	if k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("load agent key %s: not ECDSA P-256", p)
	}
	return k, nil
}

// loadCert returns the client certificate in dir for key (nil when there is
// none, or it is not for key).
func loadCert(dir string, key *ecdsa.PrivateKey) (*tls.Certificate, error) {
	b, err := os.ReadFile(filepath.Join(dir, certFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load client certificate: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("load client certificate: no certificate in %s", filepath.Join(dir, certFile))
	}
	return clientCert(blk.Bytes, key)
}

// ErrCertKeyMismatch is returned for a client certificate that is not for
// the agent's key.
var ErrCertKeyMismatch = errors.New("client certificate is not for the agent's key")

// clientCert builds a TLS certificate from a DER certificate the server
// signed for key.
func clientCert(der []byte, key *ecdsa.PrivateKey) (*tls.Certificate, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("client certificate: %w", ErrCertKeyMismatch)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: c}, nil
}

// certRequest is a PKCS#10 request (DER) for key; the server decides the
// subject.
func certRequest(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "hodei-agent"}}, key)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	return der, nil
}

// saveIdentity writes id and cert (nil: removes the certificate) to dir.
func saveIdentity(dir string, id Identity, cert *tls.Certificate) error {
	if cert != nil {
		p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
		if err := atomicfile.Write(filepath.Join(dir, certFile), p, 0o600); err != nil {
			return err
		}
	} else if err := os.Remove(filepath.Join(dir, certFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove client certificate: %w", err)
	}
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	return atomicfile.Write(filepath.Join(dir, identityJSONFile), b, 0o600)
}

// certDue reports whether c is missing or in the last third of its
// validity at now: the agent then asks for a new one in Hello.
func certDue(c *tls.Certificate, now time.Time) bool {
	if c == nil || c.Leaf == nil {
		return true
	}
	life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
	return !now.Before(c.Leaf.NotAfter.Add(-life / 3))
}

// getClientCertificate is the TLS client's certificate callback: the
// current client certificate while it is valid, else none (the server then
// admits the agent by a token).
func (a *Agent) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cert != nil && a.cfg.Clock.Now().Before(a.cert.Leaf.NotAfter) {
		return a.cert, nil
	}
	return &tls.Certificate{}, nil
}

// persistIdentity saves the current identity (best effort: an agent that
// cannot save it still runs, and needs a join token after a restart).
func (a *Agent) persistIdentity() {
	if a.idDir == "" {
		return
	}
	a.persistMu.Lock()
	defer a.persistMu.Unlock()
	a.mu.Lock()
	id := Identity{WorkerID: a.workerID, Token: a.identity, TokenExpires: a.identityExp, CAFingerprint: a.caFingerprint}
	cert := a.cert
	a.mu.Unlock()
	if err := saveIdentity(a.idDir, id, cert); err != nil {
		a.cfg.Logger.Warn("save identity: a restart will need a join token", "err", err)
	}
}

// setCertLocked installs a client certificate the server sent (DER). A
// certificate that is not for our key is ignored.
func (a *Agent) setCertLocked(der []byte) {
	if len(der) == 0 || a.key == nil {
		return
	}
	c, err := clientCert(der, a.key)
	if err != nil {
		a.cfg.Logger.Warn("ignoring client certificate from server", "err", err)
		return
	}
	a.cert = c
}
