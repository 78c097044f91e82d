package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// JoinPrefix starts every join token.
const JoinPrefix = "hodei1"

// ErrMalformedToken is returned by ParseJoinToken for anything that is not
// "hodei1.<id>.<secret>.<ca-sha256-hex>".
var ErrMalformedToken = errors.New("malformed join token")

// JoinToken is a parsed join token.
type JoinToken struct {
	ID            string // 16 lowercase hex characters; names the token server-side
	Secret        string // 64 lowercase hex characters; the server keeps only its hash
	CAFingerprint string // 64 lowercase hex characters: SHA-256 of the CA's DER
}

// String is the token's wire form.
func (t JoinToken) String() string {
	return JoinPrefix + "." + t.ID + "." + t.Secret + "." + t.CAFingerprint
}

// NewJoinToken returns a random token for a CA with fingerprint fp.
func NewJoinToken(fp string) (JoinToken, error) {
	id, err := RandomHex(8)
	if err != nil {
		return JoinToken{}, err
	}
	sec, err := RandomHex(32)
	if err != nil {
		return JoinToken{}, err
	}
	return JoinToken{ID: id, Secret: sec, CAFingerprint: fp}, nil
}

// ParseJoinToken parses s. It never panics; errors wrap ErrMalformedToken
// and name the part that is wrong, never echoing the secret.
func ParseJoinToken(s string) (JoinToken, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 4 {
		return JoinToken{}, fmt.Errorf("parse join token: want 4 dot-separated parts, got %d: %w", len(parts), ErrMalformedToken)
	}
	if parts[0] != JoinPrefix {
		return JoinToken{}, fmt.Errorf("parse join token: prefix is not %q: %w", JoinPrefix, ErrMalformedToken)
	}
	t := JoinToken{ID: parts[1], Secret: parts[2], CAFingerprint: parts[3]}
	for _, f := range []struct {
		name, v string
		n       int
	}{{"id", t.ID, 16}, {"secret", t.Secret, 64}, {"ca fingerprint", t.CAFingerprint, 64}} {
		if !IsHex(f.v, f.n) {
			return JoinToken{}, fmt.Errorf("parse join token: %s is not %d lowercase hex characters: %w", f.name, f.n, ErrMalformedToken)
		}
	}
	return t, nil
}

// IsHex reports whether s is exactly n lowercase hex characters.
func IsHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// RandomHex returns n random bytes as lowercase hex.
func RandomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// HashSecret is the stored form of a token secret: hex SHA-256. Secrets are
// 256 random bits, so a plain hash is enough (no password stretching).
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// SecretMatches compares secret with a stored hash in constant time.
func SecretMatches(secret, hash string) bool {
	return subtle.ConstantTimeCompare([]byte(HashSecret(secret)), []byte(hash)) == 1
}
