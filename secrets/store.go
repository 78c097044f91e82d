package secrets

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Limits and file names.
const (
	// MinValueBytes is the shortest value accepted, before and after trimming
	// white space: the agent's masker (agent/mask.MinSecretLen) does not mask
	// shorter strings.
	MinValueBytes = 6
	// MaxValueBytes bounds one value.
	MaxValueBytes = 64 << 10
	// MaxNameBytes bounds a name.
	MaxNameBytes = 253
	// MaxSecrets bounds the number of secrets in one store.
	MaxSecrets = 10000
	// KeySize is the AES-256 key size in bytes.
	KeySize = 32
	// KeyFile is the key file's name in the store's directory.
	KeyFile = "secret.key"
	// DataFile is the encrypted secrets file's name in the store's directory.
	DataFile = "secrets.json"
	// EnvKey is the environment variable the server reads the key from
	// (base64 of KeySize bytes) before falling back to KeyFile.
	EnvKey = "HODEI_SECRET_KEY"
)

var (
	// ErrNotFound is returned by Delete for an unknown name, and (inside a
	// *MissingError) by Resolve when a named secret does not exist.
	ErrNotFound = errors.New("secret not found")

	// ErrInvalid is returned (inside a *FieldError) for a bad name or value,
	// or a bad key. Nothing is changed.
	ErrInvalid = errors.New("invalid secret")

	// ErrWrongKey is returned by Open when the key does not decrypt the data
	// file, or the data file exists without its key.
	ErrWrongKey = errors.New("secret key does not match the secret store")

	// ErrCorrupt is returned by Open and Resolve when the data file cannot be
	// parsed or a value fails authentication.
	ErrCorrupt = errors.New("secret store is corrupt")

	// ErrFull is returned by Set when the store holds MaxSecrets secrets.
	ErrFull = errors.New("secret store is full")
)

// FieldError names what is wrong with a name, value or key. It never holds
// the value itself. It unwraps to ErrInvalid.
type FieldError struct {
	Field  string // "name", "value" or "key"
	Name   string // the secret's name, when known
	Reason string
}

// Error implements error.
func (e *FieldError) Error() string {
	if e.Name != "" && e.Field != "name" {
		return fmt.Sprintf("%v %q: %s: %s", ErrInvalid, e.Name, e.Field, e.Reason)
	}
	return fmt.Sprintf("%v: %s: %s", ErrInvalid, e.Field, e.Reason)
}

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// MissingError lists the secrets Resolve could not find, sorted. It unwraps
// to ErrNotFound.
type MissingError struct {
	Names []string
}

// Error implements error.
func (e *MissingError) Error() string {
	return fmt.Sprintf("%v: %s", ErrNotFound, strings.Join(e.Names, ", "))
}

// Unwrap returns ErrNotFound.
func (e *MissingError) Unwrap() error { return ErrNotFound }

// Info describes one secret; it never holds the value.
type Info struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Options configures Open. The zero value reads or creates the key file.
type Options struct {
	// Key is the AES-256 key (KeySize bytes). Nil means the key file in the
	// store's directory, created on first start.
	Key []byte
	// Clock stamps creation and update times (default time.Now).
	Clock func() time.Time
}

// Store is an encrypted, file-backed secret store, safe for concurrent use.
type Store struct {
	dir   string
	aead  cipher.AEAD
	clock func() time.Time

	mu      sync.RWMutex
	entries map[string]entry
	check   []byte // sealed key check value
}

// entry is one secret as stored: the value sealed, never in clear.
type entry struct {
	Sealed    []byte    `json:"sealed"` // nonce || ciphertext+tag (base64 in JSON)
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// fileFormat is the data file.
type fileFormat struct {
	Version  int              `json:"version"`
	KeyCheck []byte           `json:"key_check"`
	Secrets  map[string]entry `json:"secrets"`
}

const (
	fileVersion   = 1
	keyCheckPlain = "hodei secret store v1"
	keyCheckAD    = "hodei/key-check/v1"
	valueADPrefix = "hodei/secret/v1/"
)

// ParseKey decodes a base64 (standard or URL alphabet, padded or not) key of
// KeySize bytes, as HODEI_SECRET_KEY holds it. The error never shows the key.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != KeySize {
				return nil, fmt.Errorf("parse secret key: %w", &FieldError{Field: "key",
					Reason: fmt.Sprintf("%d bytes, want %d (generate one with: head -c 32 /dev/urandom | base64)", len(b), KeySize)})
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("parse secret key: %w", &FieldError{Field: "key", Reason: "not base64"})
}

// KeyFromEnv returns the key in EnvKey (HODEI_SECRET_KEY) as getenv (e.g.
// os.Getenv) reads it, or nil when it is unset, so Open falls back to the
// key file. A bad value is an error naming the variable, never showing it.
func KeyFromEnv(getenv func(string) string) ([]byte, error) {
	v := getenv(EnvKey)
	if v == "" {
		return nil, nil
	}
	k, err := ParseKey(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvKey, err)
	}
	return k, nil
}

// NewKey returns a fresh random key.
func NewKey() []byte {
	k := make([]byte, KeySize)
	_, _ = rand.Read(k) // never fails (crypto/rand panics on failure)
	return k
}

// Open opens the secret store in dir, creating dir, the key file (when
// opts.Key is nil) and the data file as needed. Errors: ErrWrongKey,
// ErrCorrupt, *FieldError (a bad key), or the file system's.
func Open(dir string, opts Options) (*Store, error) {
	if dir == "" {
		return nil, fmt.Errorf("open secret store: %w", &FieldError{Field: "dir", Reason: "empty"})
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open secret store: %w", err)
	}
	dataPath := filepath.Join(dir, DataFile)
	raw, err := os.ReadFile(dataPath)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open secret store: %w", err)
	}
	key := opts.Key
	if key == nil {
		if key, err = loadKeyFile(filepath.Join(dir, KeyFile), !exists); err != nil {
			return nil, fmt.Errorf("open secret store: %w", err)
		}
	} else if len(key) != KeySize {
		return nil, fmt.Errorf("open secret store: %w", &FieldError{Field: "key", Reason: fmt.Sprintf("%d bytes, want %d", len(key), KeySize)})
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("open secret store: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("open secret store: %w", err)
	}
	s := &Store{dir: dir, aead: aead, clock: opts.Clock, entries: map[string]entry{}}
	if s.clock == nil {
		s.clock = time.Now
	}
	if !exists {
		s.check = s.seal([]byte(keyCheckPlain), []byte(keyCheckAD))
		if err := s.writeLocked(); err != nil {
			return nil, fmt.Errorf("open secret store: %w", err)
		}
		return s, nil
	}
	var f fileFormat
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("open secret store %s: %w: %v", dataPath, ErrCorrupt, err)
	}
	if f.Version != fileVersion {
		return nil, fmt.Errorf("open secret store %s: %w: version %d, want %d", dataPath, ErrCorrupt, f.Version, fileVersion)
	}
	if plain, err := s.open(f.KeyCheck, []byte(keyCheckAD)); err != nil || string(plain) != keyCheckPlain {
		return nil, fmt.Errorf("open secret store %s: %w: the key (from %s or %s) does not decrypt it; restore the key it was written with",
			dataPath, ErrWrongKey, EnvKey, KeyFile)
	}
	s.check = f.KeyCheck
	for name, e := range f.Secrets {
		if ValidateName(name) != nil {
			return nil, fmt.Errorf("open secret store %s: %w: bad name %q", dataPath, ErrCorrupt, name)
		}
		s.entries[name] = e
	}
	return s, nil
}

// loadKeyFile reads the key file, or creates it with a fresh key when create
// is true (there is no data file yet).
func loadKeyFile(path string, create bool) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if !create {
			return nil, fmt.Errorf("key file %s: %w: %s exists but its key file is missing; restore %s or set %s",
				path, ErrWrongKey, DataFile, KeyFile, EnvKey)
		}
		return createKeyFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s: %w", path, &FieldError{Field: "key",
			Reason: fmt.Sprintf("the file is accessible by group or others (mode %04o): chmod 600 %s", fi.Mode().Perm(), path)})
	}
	key, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}

func createKeyFile(path string) ([]byte, error) {
	key := NewKey()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create key file: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("create key file: %w", err)
	}
	return key, nil
}

// Set creates or replaces secret name. It reports whether the secret is new.
// Errors: *FieldError (ErrInvalid) naming the name or value, ErrFull, or a
// write error (then nothing changed).
func (s *Store) Set(ctx context.Context, name, value string) (Info, bool, error) {
	if err := ctx.Err(); err != nil {
		return Info{}, false, fmt.Errorf("set secret %q: %w", name, err)
	}
	if err := ValidateName(name); err != nil {
		return Info{}, false, fmt.Errorf("set secret: %w", err)
	}
	if err := ValidateValue(name, value); err != nil {
		return Info{}, false, fmt.Errorf("set secret: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, exists := s.entries[name]
	if !exists && len(s.entries) >= MaxSecrets {
		return Info{}, false, fmt.Errorf("set secret %q: %w (%d secrets)", name, ErrFull, MaxSecrets)
	}
	now := s.clock().UTC()
	e := entry{Sealed: s.seal([]byte(value), valueAD(name)), CreatedAt: now, UpdatedAt: now}
	if exists {
		e.CreatedAt = old.CreatedAt
	}
	s.entries[name] = e
	if err := s.writeLocked(); err != nil {
		if exists {
			s.entries[name] = old
		} else {
			delete(s.entries, name)
		}
		return Info{}, false, fmt.Errorf("set secret %q: %w", name, err)
	}
	return Info{Name: name, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}, !exists, nil
}

// Delete removes secret name. Errors: ErrNotFound, *FieldError for a bad
// name, or a write error (then nothing changed).
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete secret %q: %w", name, err)
	}
	if err := ValidateName(name); err != nil {
		return fmt.Errorf("delete secret: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.entries[name]
	if !ok {
		return fmt.Errorf("delete secret %q: %w", name, ErrNotFound)
	}
	delete(s.entries, name)
	if err := s.writeLocked(); err != nil {
		s.entries[name] = old
		return fmt.Errorf("delete secret %q: %w", name, err)
	}
	return nil
}

// List returns every secret's name and times, sorted by name.
func (s *Store) List(ctx context.Context) ([]Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Info, 0, len(s.entries))
	for _, name := range slices.Sorted(maps.Keys(s.entries)) {
		e := s.entries[name]
		out = append(out, Info{Name: name, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt})
	}
	return out, nil
}

// Resolve returns the values of the named secrets. It implements
// core.SecretResolver. Errors: a *MissingError (ErrNotFound) naming every
// missing secret, or ErrCorrupt naming a value that fails authentication.
func (s *Store) Resolve(ctx context.Context, names []string) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("resolve secrets: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]string, len(names))
	var missing []string
	for _, name := range names {
		if _, done := out[name]; done {
			continue
		}
		e, ok := s.entries[name]
		if !ok {
			if !slices.Contains(missing, name) {
				missing = append(missing, name)
			}
			continue
		}
		v, err := s.open(e.Sealed, valueAD(name))
		if err != nil {
			return nil, fmt.Errorf("resolve secret %q: %w: value does not authenticate", name, ErrCorrupt)
		}
		out[name] = string(v)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("resolve secrets: %w", &MissingError{Names: missing})
	}
	return out, nil
}

func valueAD(name string) []byte { return []byte(valueADPrefix + name) }

// seal encrypts plain under a fresh nonce: nonce || ciphertext.
func (s *Store) seal(plain, ad []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, ad)
}

func (s *Store) open(sealed, ad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, ErrCorrupt
	}
	return s.aead.Open(nil, sealed[:n], sealed[n:], ad)
}

// writeLocked replaces the data file atomically with the current entries.
func (s *Store) writeLocked() error {
	b, err := json.MarshalIndent(fileFormat{Version: fileVersion, KeyCheck: s.check, Secrets: s.entries}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode secrets: %w", err)
	}
	path := filepath.Join(s.dir, DataFile)
	tmp, err := os.CreateTemp(s.dir, DataFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("write secrets: %w", err)
	}
	cleanup := func(err error) error {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write secrets: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		return cleanup(err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		return cleanup(err)
	}
	if err := tmp.Sync(); err != nil {
		return cleanup(err)
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write secrets: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write secrets: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("write secrets: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ValidateName checks a secret name: 1-253 bytes of ASCII letters, digits,
// '.', '_', '-' and '/', starting and ending with a letter or digit
// ("prod/db-password"), the syntax job specs use to name secrets. It returns
// a *FieldError.
func ValidateName(name string) error {
	bad := func(reason string) error {
		return &FieldError{Field: "name", Reason: fmt.Sprintf("%q: %s", name, reason)}
	}
	if name == "" {
		return &FieldError{Field: "name", Reason: "empty"}
	}
	if len(name) > MaxNameBytes {
		return &FieldError{Field: "name", Reason: fmt.Sprintf("%d bytes, at most %d", len(name), MaxNameBytes)}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if isAlnum(c) || c == '.' || c == '_' || c == '-' || c == '/' {
			continue
		}
		return bad("must contain only letters, digits, '.', '_', '-' and '/'")
	}
	if !isAlnum(name[0]) || !isAlnum(name[len(name)-1]) {
		return bad("must start and end with a letter or digit")
	}
	return nil
}

// ValidateValue checks a value for secret name: at least MinValueBytes long
// also after trimming white space (so the agent can mask it), at most
// MaxValueBytes, valid UTF-8 without NUL bytes (it becomes an environment
// variable). The error describes the value, never shows it.
func ValidateValue(name, value string) error {
	bad := func(format string, args ...any) error {
		return &FieldError{Field: "value", Name: name, Reason: fmt.Sprintf(format, args...)}
	}
	switch trimmed := len(strings.TrimSpace(value)); {
	case len(value) < MinValueBytes || trimmed < MinValueBytes:
		return bad("%d bytes without surrounding white space, at least %d are needed so it can be masked in job output", trimmed, MinValueBytes)
	case len(value) > MaxValueBytes:
		return bad("%d bytes, at most %d", len(value), MaxValueBytes)
	case strings.IndexByte(value, 0) >= 0:
		return bad("contains a NUL byte")
	case !utf8.ValidString(value):
		return bad("not valid UTF-8")
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
