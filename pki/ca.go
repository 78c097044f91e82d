package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hodei-jobs/hodei/internal/atomicfile"
)

// File names inside the data dir.
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	ServerFile    = "server.pem"
	ServerKeyFile = "server-key.pem"
	lockFile      = "pki.lock"
)

const (
	caLifetime     = 10 * 365 * 24 * time.Hour
	serverLifetime = 365 * 24 * time.Hour
	// renewBefore is how close to expiry a server certificate is replaced.
	renewBefore = 30 * 24 * time.Hour
)

// Bundle is a CA and the server certificate it signed.
type Bundle struct {
	CA     *x509.Certificate
	CAKey  *ecdsa.PrivateKey // nil when the CA was given as files without a key
	Server tls.Certificate   // leaf first, then the CA
}

// Fingerprint is the lowercase hex SHA-256 of the CA certificate's DER: the
// value join tokens carry.
func (b *Bundle) Fingerprint() string { return Fingerprint(b.CA) }

// Fingerprint is the lowercase hex SHA-256 of c's DER encoding.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// CAPEM is the CA certificate in PEM.
func (b *Bundle) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.CA.Raw})
}

// ServerTLS is the server side TLS config: the server certificate, TLS 1.2
// or later; client certificates signed by the CA are verified when
// presented: enrolled agents dial with theirs (mutual TLS), enrolling agents
// and API clients have none.
func (b *Bundle) ServerTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(b.CA)
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{b.Server},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		NextProtos:   []string{"h2", "http/1.1"},
	}
}

// ClientTLS trusts exactly the bundle's CA.
func (b *Bundle) ClientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(b.CA)
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
}

// DefaultSANs are the names every server certificate carries, plus extra.
func DefaultSANs(extra ...string) []string {
	sans := []string{"127.0.0.1", "::1", "localhost"}
	if h, err := os.Hostname(); err == nil && h != "" {
		sans = append(sans, h)
	}
	for _, s := range extra {
		if s != "" && !slices.Contains(sans, s) {
			sans = append(sans, s)
		}
	}
	return sans
}

// LoadOrCreate loads the CA and server certificate from dir, creating them
// on first use; the server certificate is reissued when it expires within
// 30 days of now or lacks one of sans. now is injected for tests.
func LoadOrCreate(dir string, sans []string, now time.Time) (*Bundle, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pki dir: %w", err)
	}
	// `hodei token create --agent` and a starting server may race to make
	// the CA; the lock makes the second one load what the first made.
	lf, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock pki: %w", err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock pki: %w", err)
	}
	b := &Bundle{}
	ca, key, err := loadPair(filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		if ca, key, err = newCA(now); err != nil {
			return nil, err
		}
		if err := writePair(dir, CAFile, CAKeyFile, [][]byte{ca.Raw}, key); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("load ca: %w", err)
	}
	b.CA, b.CAKey = ca, key
	leaf, lkey, err := loadPair(filepath.Join(dir, ServerFile), filepath.Join(dir, ServerKeyFile))
	if err == nil && leaf.CheckSignatureFrom(ca) == nil && now.Add(renewBefore).Before(leaf.NotAfter) && hasSANs(leaf, sans) {
		b.Server = tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.Raw}, PrivateKey: lkey, Leaf: leaf}
		return b, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("load server certificate: %w", err)
	}
	if b.Server, err = b.issueServer(sans, now); err != nil {
		return nil, err
	}
	if err := writePair(dir, ServerFile, ServerKeyFile, b.Server.Certificate, b.Server.PrivateKey.(*ecdsa.PrivateKey)); err != nil {
		return nil, err
	}
	return b, nil
}

// LoadFiles builds a bundle from a given certificate, key and (optional) CA
// file. Without caFile the last certificate of certFile's chain is the CA.
func LoadFiles(certFile, keyFile, caFile string) (*Bundle, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", certFile, err)
	}
	caDER := pair.Certificate[len(pair.Certificate)-1]
	if caFile != "" {
		p, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("load ca: %w", err)
		}
		blk, _ := pem.Decode(p)
		if blk == nil || blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("load ca: no certificate in %s", caFile)
		}
		caDER = blk.Bytes
		if !slices.ContainsFunc(pair.Certificate, func(d []byte) bool { return bytes.Equal(d, caDER) }) {
			pair.Certificate = append(pair.Certificate, caDER)
		}
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	return &Bundle{CA: ca, Server: pair}, nil
}

func hasSANs(c *x509.Certificate, sans []string) bool {
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(c.DNSNames, s) {
			return false
		}
	}
	return true
}

func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	return n, nil
}

func newCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("create ca key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "Hodei CA", Organization: []string{"Hodei"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create ca: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("create ca: %w", err)
	}
	return c, key, nil
}

// issueServer signs a server certificate for sans.
func (b *Bundle) issueServer(sans []string, now time.Time) (tls.Certificate, error) {
	if b.CAKey == nil {
		return tls.Certificate{}, errors.New("issue server certificate: no ca key")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue server certificate: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: "hodei server", Organization: []string{"Hodei"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(serverLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, b.CA, &key.PublicKey, b.CAKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, b.CA.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func loadPair(certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cp, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	kp, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(cp)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("no certificate in %s", certFile)
	}
	c, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", certFile, err)
	}
	kb, _ := pem.Decode(kp)
	if kb == nil {
		return nil, nil, fmt.Errorf("no key in %s", keyFile)
	}
	k, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", keyFile, err)
	}
	return c, k, nil
}

func writePair(dir, certName, keyName string, chain [][]byte, key *ecdsa.PrivateKey) error {
	var cp []byte
	for _, d := range chain {
		cp = append(cp, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("write %s: %w", keyName, err)
	}
	if err := atomicfile.Write(filepath.Join(dir, keyName), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, certName), cp, 0o600)
}
