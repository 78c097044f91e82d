package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hodei-jobs/hodei/internal/atomicfile"
)

// IdentityKeyFile holds the HMAC key of worker identity tokens.
const IdentityKeyFile = "identity.key"

// IdentityTTL is the lifetime of a worker identity token.
const IdentityTTL = 15 * time.Minute

// ErrBadIdentity is returned for an identity token that is malformed or
// not signed by this server.
var ErrBadIdentity = errors.New("bad identity token")

// Identities issues and checks worker identity tokens: JWTs (HS256, RFC
// 7519) with the worker id as subject and a 15-minute lifetime, signed
// with a key kept in data/identity.key (0600, made on first start). The
// server renews them over the agent stream before they expire (hwp).
type Identities struct {
	key     []byte
	now     func() time.Time
	revoked func(workerID string) bool
}

// OpenIdentities loads or creates the key in dir. revoked (may be nil)
// reports whether a worker's identity has been revoked (Store.WorkerRevoked).
func OpenIdentities(dir string, now func() time.Time, revoked func(string) bool) (*Identities, error) {
	if now == nil {
		now = time.Now
	}
	p := filepath.Join(dir, IdentityKeyFile)
	key, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("create identity key: %w", err)
		}
		if err := atomicfile.Write(p, key, 0o600); err != nil {
			return nil, fmt.Errorf("create identity key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("load identity key: %w", err)
	}
	if len(key) < 32 {
		return nil, fmt.Errorf("load identity key %s: %d bytes, want 32", p, len(key))
	}
	return &Identities{key: key, now: now, revoked: revoked}, nil
}

// jwtHeader is the only header Identities makes or accepts ("alg": "none"
// and every other algorithm are refused).
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

type claims struct {
	Iss string `json:"iss"`
	Sub string `json:"sub"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
}

func (ids *Identities) sign(s string) string {
	m := hmac.New(sha256.New, ids.key)
	m.Write([]byte(s))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Issue returns a new identity token for workerID and its expiry.
func (ids *Identities) Issue(workerID string) (string, time.Time, error) {
	if workerID == "" {
		return "", time.Time{}, errors.New("issue identity: empty worker id")
	}
	now := ids.now()
	exp := now.Add(IdentityTTL).Truncate(time.Second)
	b, err := json.Marshal(claims{Iss: "hodei", Sub: workerID, Iat: now.Unix(), Exp: exp.Unix()})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue identity: %w", err)
	}
	s := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(b)
	return s + "." + ids.sign(s), exp, nil
}

// Verify returns the worker id and expiry of a live identity token. Errors
// wrap ErrBadIdentity, ErrExpired or ErrRevoked.
func (ids *Identities) Verify(token string) (string, time.Time, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != jwtHeader {
		return "", time.Time{}, fmt.Errorf("verify identity: %w", ErrBadIdentity)
	}
	if !hmac.Equal([]byte(ids.sign(parts[0]+"."+parts[1])), []byte(parts[2])) {
		return "", time.Time{}, fmt.Errorf("verify identity: signature: %w", ErrBadIdentity)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", time.Time{}, fmt.Errorf("verify identity: payload: %w", ErrBadIdentity)
	}
	var c claims
	if err := json.Unmarshal(b, &c); err != nil || c.Sub == "" || c.Iss != "hodei" {
		return "", time.Time{}, fmt.Errorf("verify identity: claims: %w", ErrBadIdentity)
	}
	exp := time.Unix(c.Exp, 0)
	if !ids.now().Before(exp) {
		return "", time.Time{}, fmt.Errorf("verify identity of %s: %w", c.Sub, ErrExpired)
	}
	if ids.revoked != nil && ids.revoked(c.Sub) {
		return "", time.Time{}, fmt.Errorf("verify identity of %s: %w", c.Sub, ErrRevoked)
	}
	return c.Sub, exp, nil
}

// WorkerRevoked reports whether workerID's identity is revoked in the store
// (WorkerRevocation). An unreadable store revokes everyone (fail closed).
func (s *Store) WorkerRevoked(workerID string) bool {
	_, _, revoked, err := s.WorkerRevocation(workerID)
	return revoked || err != nil
}

// WorkerRevocation reports whether workerID's identity is revoked in the
// store, by whom and why: revoked directly (RevokeWorker), or enrolled with
// a join token that has since been revoked (revoking a join token revokes the
// identities of the workers it admitted). An error means the store could not
// be read: callers refuse the worker for now, but must not record it as
// revoked.
func (s *Store) WorkerRevocation(workerID string) (by, reason string, revoked bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.load()
	if err != nil {
		return "", "", false, fmt.Errorf("check revocation of worker %s: %w", workerID, err)
	}
	if r, ok := s.workers[workerID]; ok {
		return r.By, r.Reason, true, nil
	}
	for _, t := range m {
		if t.Kind == KindJoin && !t.RevokedAt.IsZero() &&
			slices.ContainsFunc(t.Enrolled, func(e Enrolment) bool { return e.WorkerID == workerID }) {
			return "admin", "join token " + t.ID + " was revoked", true, nil
		}
	}
	return "", "", false, nil
}

// RevokeWorker revokes workerID's identity for good: a connected agent is cut
// within one heartbeat interval, and its certificate and identity tokens are
// refused from then on. by names who revoked it. A repeat keeps the first
// record.
func (s *Store) RevokeWorker(workerID, by, reason string) error {
	if workerID == "" || strings.ContainsAny(workerID, " \t\n/:") || len(workerID) > 128 {
		return fmt.Errorf("revoke worker %q: not a worker id", workerID)
	}
	err := s.updateAll(func(_ map[string]Token, wm map[string]WorkerRevocation) error {
		if _, ok := wm[workerID]; !ok {
			wm[workerID] = WorkerRevocation{WorkerID: workerID, By: by, Reason: reason, At: s.now().UTC()}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke worker %s: %w", workerID, err)
	}
	return nil
}

// RevokedWorkers returns the worker revocations, oldest first.
func (s *Store) RevokedWorkers() ([]WorkerRevocation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.load(); err != nil {
		return nil, err
	}
	out := make([]WorkerRevocation, 0, len(s.workers))
	for _, r := range s.workers {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b WorkerRevocation) int { return a.At.Compare(b.At) })
	return out, nil
}

// RenewWindow is how long before expiry Renew replaces an identity token.
const RenewWindow = 5 * time.Minute

// Renew checks token and, when it expires within RenewWindow, returns a
// fresh one for the same worker ("" otherwise) with its expiry.
func (ids *Identities) Renew(token string) (string, time.Time, error) {
	w, exp, err := ids.Verify(token)
	if err != nil {
		return "", time.Time{}, err
	}
	if exp.Sub(ids.now()) > RenewWindow {
		return "", exp, nil
	}
	return ids.Issue(w)
}
