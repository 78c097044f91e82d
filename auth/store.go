package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hodei-jobs/hodei/api"
	"github.com/hodei-jobs/hodei/internal/atomicfile"
	"github.com/hodei-jobs/hodei/pki"
)

// File names inside the data dir.
const (
	TokensFile     = "tokens.json"
	lockFile       = "tokens.lock"
	AdminTokenFile = "admin.token"
)

// APIPrefix starts every API token.
const APIPrefix = "hodeiapi1"

// Errors of token checks. Each is returned wrapped, naming the operation.
var (
	// ErrNoToken is returned when a request carries no token.
	ErrNoToken = errors.New("no token")
	// ErrUnknownToken is returned for a well-formed token the store does not
	// have, or whose secret does not match.
	ErrUnknownToken = errors.New("unknown token")
	// ErrExpired is returned for a token past its expiry.
	ErrExpired = errors.New("token expired")
	// ErrRevoked is returned for a revoked token.
	ErrRevoked = errors.New("token revoked")
	// ErrUsedUp is returned for a join token with no enrolments left.
	ErrUsedUp = errors.New("join token used up")
	// ErrWrongKind is returned for an API token used to join, or the reverse.
	ErrWrongKind = errors.New("wrong kind of token")
	// ErrMalformed is returned for a string that is not a token.
	ErrMalformed = errors.New("malformed token")
)

// Kind is a token's purpose.
type Kind string

// Token kinds.
const (
	KindAPI  Kind = "api"
	KindJoin Kind = "join"
)

// Enrolment records one worker admitted with a join token.
type Enrolment struct {
	WorkerID string    `json:"worker_id"`
	At       time.Time `json:"at"`
	// Replaces is the worker id this agent had before it re-enrolled (its
	// identity had expired): such an enrolment uses no extra use.
	Replaces string `json:"replaces,omitempty"`
}

// uses is how many of a join token's enrolments count against MaxUses.
func (t Token) uses() int {
	n := 0
	for _, e := range t.Enrolled {
		if e.Replaces == "" {
			n++
		}
	}
	return n
}

// Uses is how many agents a join token has admitted (re-enrolments of the
// same agent not counted).
func (t Token) Uses() int { return t.uses() }

// Token is a stored token: never the secret, only its hash.
type Token struct {
	ID        string      `json:"id"`
	Kind      Kind        `json:"kind"`
	Role      Role        `json:"role,omitempty"`
	Name      string      `json:"name,omitempty"`
	Hash      string      `json:"hash"`
	CreatedAt time.Time   `json:"created_at"`
	ExpiresAt time.Time   `json:"expires_at,omitzero"` // zero: never
	MaxUses   int         `json:"max_uses,omitempty"`  // join tokens; 0: unlimited
	Enrolled  []Enrolment `json:"enrolled,omitempty"`
	RevokedAt time.Time   `json:"revoked_at,omitzero"`
}

// Store is the token file of one data dir. Safe for concurrent use, also
// across processes.
type Store struct {
	dir string
	now func() time.Time

	mu      sync.Mutex
	cache   map[string]Token
	workers map[string]WorkerRevocation // with cache
	stamp   fileStamp
}

// WorkerRevocation records that a worker's identity was revoked (`hodei
// worker revoke`): the server cuts its stream and refuses its certificate and
// identity tokens, and records worker.identity_revoked in the event log.
type WorkerRevocation struct {
	WorkerID string    `json:"worker_id"`
	By       string    `json:"by"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// Open returns the store in dir (created if missing). now is the clock
// (nil: time.Now).
func Open(dir string, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open tokens: %w", err)
	}
	return &Store{dir: dir, now: now}, nil
}

type fileForm struct {
	Tokens         []Token            `json:"tokens"`
	RevokedWorkers []WorkerRevocation `json:"revoked_workers,omitempty"`
}

// load returns the tokens, re-reading the file only when it changed.
// Caller holds s.mu.
func (s *Store) load() (map[string]Token, error) {
	p := filepath.Join(s.dir, TokensFile)
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		s.cache, s.workers, s.stamp = map[string]Token{}, map[string]WorkerRevocation{}, fileStamp{}
		return s.cache, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load tokens: %w", err)
	}
	st := fileStamp{fi.ModTime(), fi.Size()}
	if s.cache != nil && st == s.stamp {
		return s.cache, nil
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("load tokens: %w", err)
	}
	var f fileForm
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("load tokens %s: %w", p, err)
	}
	m := make(map[string]Token, len(f.Tokens))
	for _, t := range f.Tokens {
		m[t.ID] = t
	}
	wm := make(map[string]WorkerRevocation, len(f.RevokedWorkers))
	for _, r := range f.RevokedWorkers {
		wm[r.WorkerID] = r
	}
	s.cache, s.workers, s.stamp = m, wm, st
	return m, nil
}

// update runs fn on the tokens under the cross-process lock and writes the
// result when fn returns nil.
func (s *Store) update(fn func(map[string]Token) error) error {
	return s.updateAll(func(m map[string]Token, _ map[string]WorkerRevocation) error { return fn(m) })
}

// updateAll is update with the worker revocations too.
func (s *Store) updateAll(fn func(map[string]Token, map[string]WorkerRevocation) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	lf, err := os.OpenFile(filepath.Join(s.dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lock tokens: %w", err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock tokens: %w", err)
	}
	defer unix.Flock(int(lf.Fd()), unix.LOCK_UN) //nolint:errcheck // released on close anyway
	s.cache = nil                                // always re-read under the lock
	cur, err := s.load()
	if err != nil {
		return err
	}
	m := make(map[string]Token, len(cur))
	for k, v := range cur {
		m[k] = v
	}
	wm := make(map[string]WorkerRevocation, len(s.workers))
	for k, v := range s.workers {
		wm[k] = v
	}
	if err := fn(m, wm); err != nil {
		return err
	}
	f := fileForm{Tokens: make([]Token, 0, len(m))}
	for _, t := range m {
		f.Tokens = append(f.Tokens, t)
	}
	slices.SortFunc(f.Tokens, func(a, b Token) int { return a.CreatedAt.Compare(b.CreatedAt) })
	for _, r := range wm {
		f.RevokedWorkers = append(f.RevokedWorkers, r)
	}
	slices.SortFunc(f.RevokedWorkers, func(a, b WorkerRevocation) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return strings.Compare(a.WorkerID, b.WorkerID)
	})
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("save tokens: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(s.dir, TokensFile), b, 0o600); err != nil {
		return fmt.Errorf("save tokens: %w", err)
	}
	s.cache = nil
	return nil
}

// List returns every token, oldest first.
func (s *Store) List() ([]Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.load()
	if err != nil {
		return nil, err
	}
	out := make([]Token, 0, len(m))
	for _, t := range m {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b Token) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// CreateAPI stores a new API token with role r and returns its wire form,
// the only time the secret exists outside the caller. ttl 0: no expiry.
func (s *Store) CreateAPI(r Role, name string, ttl time.Duration) (string, Token, error) {
	if r.rank() == 0 {
		return "", Token{}, fmt.Errorf("create api token: role %q is not viewer, operator or admin", r)
	}
	id, err := pki.RandomHex(8)
	if err != nil {
		return "", Token{}, fmt.Errorf("create api token: %w", err)
	}
	sec, err := pki.RandomHex(32)
	if err != nil {
		return "", Token{}, fmt.Errorf("create api token: %w", err)
	}
	now := s.now().UTC()
	t := Token{ID: id, Kind: KindAPI, Role: r, Name: name, Hash: pki.HashSecret(sec), CreatedAt: now}
	if ttl > 0 {
		t.ExpiresAt = now.Add(ttl)
	}
	if err := s.update(func(m map[string]Token) error { m[id] = t; return nil }); err != nil {
		return "", Token{}, fmt.Errorf("create api token: %w", err)
	}
	return APIPrefix + "." + id + "." + sec, t, nil
}

// CreateJoin stores a new join token for the CA with fingerprint fp. ttl 0:
// no expiry; uses 0: unlimited enrolments.
func (s *Store) CreateJoin(fp, name string, ttl time.Duration, uses int) (pki.JoinToken, Token, error) {
	if !pki.IsHex(fp, 64) {
		return pki.JoinToken{}, Token{}, errors.New("create join token: ca fingerprint is not 64 lowercase hex characters")
	}
	if uses < 0 {
		return pki.JoinToken{}, Token{}, fmt.Errorf("create join token: uses %d is negative", uses)
	}
	jt, err := pki.NewJoinToken(fp)
	if err != nil {
		return pki.JoinToken{}, Token{}, fmt.Errorf("create join token: %w", err)
	}
	now := s.now().UTC()
	t := Token{ID: jt.ID, Kind: KindJoin, Name: name, Hash: pki.HashSecret(jt.Secret), CreatedAt: now, MaxUses: uses}
	if ttl > 0 {
		t.ExpiresAt = now.Add(ttl)
	}
	if err := s.update(func(m map[string]Token) error { m[t.ID] = t; return nil }); err != nil {
		return pki.JoinToken{}, Token{}, fmt.Errorf("create join token: %w", err)
	}
	return jt, t, nil
}

// Revoke marks the token with id revoked; it is refused from then on.
func (s *Store) Revoke(id string) error {
	err := s.update(func(m map[string]Token) error {
		t, ok := m[id]
		if !ok {
			return ErrUnknownToken
		}
		if t.RevokedAt.IsZero() {
			t.RevokedAt = s.now().UTC()
			m[id] = t
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	return nil
}

// check validates a stored token's state at now.
func check(t Token, now time.Time) error {
	if !t.RevokedAt.IsZero() {
		return ErrRevoked
	}
	if !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) {
		return ErrExpired
	}
	return nil
}

// ParseAPIToken splits "hodeiapi1.<id>.<secret>". It never panics.
func ParseAPIToken(s string) (id, secret string, err error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != APIPrefix || !pki.IsHex(parts[1], 16) || !pki.IsHex(parts[2], 64) {
		return "", "", fmt.Errorf("parse api token: want %s.<16 hex>.<64 hex>: %w", APIPrefix, ErrMalformed)
	}
	return parts[1], parts[2], nil
}

// VerifyAPI returns the stored API token that cred proves.
func (s *Store) VerifyAPI(cred string) (Token, error) {
	if cred == "" {
		return Token{}, fmt.Errorf("verify api token: %w", ErrNoToken)
	}
	id, sec, err := ParseAPIToken(cred)
	if err != nil {
		return Token{}, fmt.Errorf("verify api token: %w", err)
	}
	s.mu.Lock()
	m, err := s.load()
	t, ok := m[id]
	s.mu.Unlock()
	if err != nil {
		return Token{}, fmt.Errorf("verify api token: %w", err)
	}
	if !ok || !pki.SecretMatches(sec, t.Hash) {
		return Token{}, fmt.Errorf("verify api token: %w", ErrUnknownToken)
	}
	if t.Kind != KindAPI {
		return Token{}, fmt.Errorf("verify api token: %w", ErrWrongKind)
	}
	if err := check(t, s.now()); err != nil {
		return Token{}, fmt.Errorf("verify api token %s: %w", id, err)
	}
	return t, nil
}

// Authenticate implements api.Authenticator: the credential must be a live
// API token whose role allows op.
func (s *Store) Authenticate(_ context.Context, op, cred string) (api.Caller, error) {
	t, err := s.VerifyAPI(cred)
	if err != nil {
		return api.Caller{}, fmt.Errorf("%w: %w", api.ErrUnauthenticated, err)
	}
	if !Allowed(t.Role, op) {
		return api.Caller{}, fmt.Errorf("%w: role %s may not call %s", api.ErrPermissionDenied, t.Role, op)
	}
	name := t.Name
	if name == "" {
		name = "token-" + t.ID
	}
	return api.Caller{Name: name, Role: string(t.Role)}, nil
}

var _ api.Authenticator = (*Store)(nil)

// Join admits an agent presenting the join token cred. agentID is the
// worker id the agent already has ("" on first contact): a worker recorded
// on the token reconnects without using an enrolment; anyone else needs a
// live token with enrolments left, and an agent claiming a worker id not
// recorded on the token is refused. It returns the token id, for Enrolled.
func (s *Store) Join(cred, agentID string) (string, error) {
	jt, err := pki.ParseJoinToken(cred)
	if err != nil {
		return "", fmt.Errorf("join: %w", ErrMalformed)
	}
	s.mu.Lock()
	m, err := s.load()
	t, ok := m[jt.ID]
	s.mu.Unlock()
	if err != nil {
		return "", fmt.Errorf("join: %w", err)
	}
	if !ok || !pki.SecretMatches(jt.Secret, t.Hash) {
		return "", fmt.Errorf("join: %w", ErrUnknownToken)
	}
	if t.Kind != KindJoin {
		return "", fmt.Errorf("join: %w", ErrWrongKind)
	}
	if !t.RevokedAt.IsZero() {
		return "", fmt.Errorf("join with token %s: %w", t.ID, ErrRevoked)
	}
	if agentID != "" {
		// A worker id is taken over by whoever presents it: only workers
		// enrolled with this very token may claim theirs.
		if slices.ContainsFunc(t.Enrolled, func(e Enrolment) bool { return e.WorkerID == agentID }) {
			return t.ID, nil
		}
		return "", fmt.Errorf("join with token %s: worker %s did not enrol with this token: %w", t.ID, agentID, ErrUnknownToken)
	}
	if err := check(t, s.now()); err != nil {
		return "", fmt.Errorf("join with token %s: %w", t.ID, err)
	}
	if t.MaxUses > 0 && t.uses() >= t.MaxUses {
		return "", fmt.Errorf("join with token %s: %w", t.ID, ErrUsedUp)
	}
	return t.ID, nil
}

// Enrolled records that workerID joined with the token id, using one of its
// enrolments unless the worker is already recorded or it replaces (a worker
// id recorded on the token: the same agent, given a new id). It re-checks
// the limit under the lock, so two agents racing for the last use cannot
// both win.
func (s *Store) Enrolled(id, workerID, replaces string) error {
	err := s.update(func(m map[string]Token) error {
		t, ok := m[id]
		if !ok {
			return ErrUnknownToken
		}
		has := func(w string) bool {
			return slices.ContainsFunc(t.Enrolled, func(e Enrolment) bool { return e.WorkerID == w })
		}
		if has(workerID) {
			return nil
		}
		e := Enrolment{WorkerID: workerID, At: s.now().UTC()}
		if replaces != "" && has(replaces) {
			e.Replaces = replaces
		} else if t.MaxUses > 0 && t.uses() >= t.MaxUses {
			return ErrUsedUp
		}
		t.Enrolled = append(t.Enrolled, e)
		m[id] = t
		return nil
	})
	if err != nil {
		return fmt.Errorf("record enrolment with token %s: %w", id, err)
	}
	return nil
}

// Bootstrap makes sure an admin exists: when the store has no live admin
// token and dir has no admin.token file, it creates one, writes it to
// data/admin.token (0600) and returns it (else ""), so the first start can
// print it once.
func (s *Store) Bootstrap() (string, error) {
	p := filepath.Join(s.dir, AdminTokenFile)
	if _, err := os.Stat(p); err == nil {
		return "", nil
	}
	ts, err := s.List()
	if err != nil {
		return "", fmt.Errorf("bootstrap admin token: %w", err)
	}
	now := s.now()
	for _, t := range ts {
		if t.Kind == KindAPI && t.Role == Admin && check(t, now) == nil {
			return "", nil
		}
	}
	tok, _, err := s.CreateAPI(Admin, "admin", 0)
	if err != nil {
		return "", fmt.Errorf("bootstrap admin token: %w", err)
	}
	if err := atomicfile.Write(p, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("bootstrap admin token: %w", err)
	}
	return tok, nil
}
