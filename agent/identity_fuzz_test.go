package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// FuzzClientCert feeds clientCert what a server may send as
// Welcome/TokenRefresh.client_certificate: it never panics and accepts only
// a certificate for the agent's own key.
func FuzzClientCert(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "w-1"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	for _, k := range []*ecdsa.PrivateKey{key, other} {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
		f.Add(der[:len(der)/2])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, der []byte) {
		c, err := clientCert(der, key)
		if err != nil {
			return
		}
		if pub, ok := c.Leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
			t.Fatalf("clientCert() accepted a certificate for another key")
		}
	})
}
