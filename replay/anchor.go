package replay

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/internal/atomicfile"
)

// Key files in a data dir. The private key signs anchors; the public key is
// written beside it for operators to copy somewhere safe.
const (
	KeyFile       = "anchor.key" // PKCS #8 PEM, mode 0600
	PublicKeyFile = "anchor.pub" // PKIX PEM
)

// AnchorFormat names the anchor file format and is part of what is signed.
const AnchorFormat = "hodei-anchor/1"

// Anchor is a signed statement that the log held the event with Hash at
// Position at Time. Kept away from the log (another volume, another
// machine), it lets an auditor prove later that the log was not cut back or
// rewritten at or before Position: the chain makes every earlier event
// depend on that hash.
type Anchor struct {
	Position  uint64
	Hash      eventstore.Hash
	Time      time.Time
	KeyID     string // KeyID of the signing key
	Signature []byte // Ed25519 over signedBytes
}

// anchorJSON is the file form of an Anchor.
type anchorJSON struct {
	Format    string `json:"format"`
	Position  uint64 `json:"position"`
	Hash      string `json:"hash"`
	Time      string `json:"time"`
	KeyID     string `json:"key_id"`
	Signature []byte `json:"signature"`
}

// signedBytes is the fixed layout the signature covers: the format name, a
// newline, BE64 position, the hash, BE64 Unix nanoseconds, the key id.
func (a *Anchor) signedBytes() []byte {
	b := append([]byte(AnchorFormat), '\n')
	b = binary.BigEndian.AppendUint64(b, a.Position)
	b = append(b, a.Hash[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(a.Time.UnixNano()))
	return append(b, a.KeyID...)
}

// KeyID names a public key: "ed25519:" and the first 8 bytes of its SHA-256
// in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

// NewAnchor signs the head of log with key, at time now.
func NewAnchor(ctx context.Context, log Header, key ed25519.PrivateKey, now time.Time) (Anchor, error) {
	head, err := log.Head(ctx)
	if err != nil {
		return Anchor{}, fmt.Errorf("anchor: head: %w", err)
	}
	if head.Position == 0 {
		return Anchor{}, errors.New("anchor: the log is empty")
	}
	return SignAnchor(head, key, now), nil
}

// SignAnchor signs head with key, at time now.
func SignAnchor(head eventstore.Head, key ed25519.PrivateKey, now time.Time) Anchor {
	a := Anchor{Position: head.Position, Hash: head.Hash, Time: time.Unix(0, now.UnixNano()).UTC(),
		KeyID: KeyID(key.Public().(ed25519.PublicKey))}
	a.Signature = ed25519.Sign(key, a.signedBytes())
	return a
}

// Verify checks that a was signed by pub.
func (a *Anchor) Verify(pub ed25519.PublicKey) error {
	if id := KeyID(pub); id != a.KeyID {
		return fmt.Errorf("verify anchor: signed by key %s, the public key given is %s", a.KeyID, id)
	}
	if !ed25519.Verify(pub, a.signedBytes(), a.Signature) {
		return fmt.Errorf("verify anchor: the signature is not valid: the anchor was altered or not signed by %s", a.KeyID)
	}
	return nil
}

// MarshalJSON implements json.Marshaler: the anchor file form.
func (a Anchor) MarshalJSON() ([]byte, error) {
	return json.Marshal(anchorJSON{Format: AnchorFormat, Position: a.Position, Hash: a.Hash.String(),
		Time: a.Time.UTC().Format(NanoTimeFormat), KeyID: a.KeyID, Signature: a.Signature})
}

// UnmarshalJSON implements json.Unmarshaler. It checks the form of every
// field, not the signature (see Verify).
func (a *Anchor) UnmarshalJSON(b []byte) error {
	var j anchorJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("anchor: %w", err)
	}
	if j.Format != AnchorFormat {
		return fmt.Errorf("anchor: format %q, this binary reads %q", j.Format, AnchorFormat)
	}
	h, err := parseHash(j.Hash)
	if err != nil {
		return fmt.Errorf("anchor: hash: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, j.Time)
	if err != nil {
		return fmt.Errorf("anchor: time: %w", err)
	}
	if j.Position == 0 {
		return errors.New("anchor: position: zero")
	}
	if len(j.Signature) != ed25519.SignatureSize {
		return fmt.Errorf("anchor: signature: %d bytes, want %d", len(j.Signature), ed25519.SignatureSize)
	}
	*a = Anchor{Position: j.Position, Hash: h, Time: t.UTC(), KeyID: j.KeyID, Signature: j.Signature}
	return nil
}

// WriteAnchorFile writes a to path atomically (temporary file, fsync,
// rename), mode 0644: anchors are public statements.
func WriteAnchorFile(path string, a Anchor) error {
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return fmt.Errorf("write anchor %s: %w", path, err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("anchor: %w", err)
	}
	return nil
}

// ReadAnchorFile reads an anchor written by WriteAnchorFile.
func ReadAnchorFile(path string) (Anchor, error) {
	var a Anchor
	b, err := os.ReadFile(path)
	if err != nil {
		return a, fmt.Errorf("read anchor: %w", err)
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("read anchor %s: %w", path, err)
	}
	return a, nil
}

// LoadOrCreateKey returns the anchor signing key of a data dir, creating it
// (mode 0600, with anchor.pub beside it) on first use. A key file that others
// may read is refused: whoever can read it can sign anchors.
func LoadOrCreateKey(dataDir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dataDir, KeyFile)
	key, err := LoadKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	_, key, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("create anchor key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("create anchor key: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create anchor key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadKey(path) // another process created it first
	}
	if err != nil {
		return nil, fmt.Errorf("create anchor key: %w", err)
	}
	_, err = f.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("create anchor key: %w", err)
	}
	if err := WritePublicKey(filepath.Join(dataDir, PublicKeyFile), key.Public().(ed25519.PublicKey)); err != nil {
		return nil, err
	}
	return key, nil
}

// LoadKey reads a PKCS #8 PEM Ed25519 private key.
func LoadKey(path string) (ed25519.PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load anchor key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("load anchor key %s: mode %04o lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load anchor key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("load anchor key %s: not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load anchor key %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("load anchor key %s: %T is not an Ed25519 key", path, k)
	}
	return key, nil
}

// WritePublicKey writes pub as PKIX PEM, mode 0644.
func WritePublicKey(path string, pub ed25519.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("write public key %s: %w", path, err)
	}
	if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	return nil
}

// LoadPublicKey reads an Ed25519 public key from a PKIX PEM file (as
// written to anchor.pub), or derives it from a private key file.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load public key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("load public key %s: not PEM", path)
	}
	switch blk.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("load public key %s: %w", path, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("load public key %s: %T is not an Ed25519 key", path, k)
		}
		return pub, nil
	case "PRIVATE KEY":
		key, err := LoadKey(path)
		if err != nil {
			return nil, err
		}
		return key.Public().(ed25519.PublicKey), nil
	}
	return nil, fmt.Errorf("load public key %s: PEM block %q, want PUBLIC KEY", path, blk.Type)
}

// DataDirPublicKey returns the public anchor key of a data dir: anchor.pub,
// else derived from anchor.key.
func DataDirPublicKey(dataDir string) (ed25519.PublicKey, error) {
	pub, err := LoadPublicKey(filepath.Join(dataDir, PublicKeyFile))
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return pub, err
	}
	key, kerr := LoadKey(filepath.Join(dataDir, KeyFile))
	if kerr != nil {
		return nil, fmt.Errorf("no anchor key in %s (%s or %s): %w", dataDir, PublicKeyFile, KeyFile, kerr)
	}
	return key.Public().(ed25519.PublicKey), nil
}

// AnchorStatus is the outcome of CheckAnchor.
type AnchorStatus string

// Anchor statuses.
const (
	// AnchorHeld: the log still holds the anchored event, with the anchored hash.
	AnchorHeld AnchorStatus = "ok"
	// AnchorTruncated: the log ends before the anchored position: its tail was cut off.
	AnchorTruncated AnchorStatus = "truncated"
	// AnchorRewritten: the event at the anchored position is not the anchored
	// one (another hash, or it cannot be read): the log was rewritten.
	AnchorRewritten AnchorStatus = "rewritten"
)

// AnchorCheck is what CheckAnchor found.
type AnchorCheck struct {
	Status AnchorStatus
	Anchor Anchor
	Head   eventstore.Head // the log's head now
	// Found is the hash now at the anchored position (zero when truncated
	// or unreadable).
	Found eventstore.Hash
	// Problem says what is wrong in a sentence ("" when Status is AnchorHeld).
	Problem string
}

// OK reports whether the log still holds the anchor.
func (c *AnchorCheck) OK() bool { return c.Status == AnchorHeld }

// CheckAnchor checks that log still holds the event a anchors, with a's
// hash. It does not check the signature (Anchor.Verify) nor the chain from
// the anchor to the head (Verify): run both for a full audit. The error is
// for failures to read the head; a missing or different event is a Status.
func CheckAnchor(ctx context.Context, log Log, a Anchor) (*AnchorCheck, error) {
	c := &AnchorCheck{Anchor: a}
	head, err := log.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("check anchor: head: %w", err)
	}
	c.Head = head
	if head.Position < a.Position {
		c.Status = AnchorTruncated
		c.Problem = fmt.Sprintf("the log ends at position %d, before the anchored position %d (anchored %s): its tail was cut off",
			head.Position, a.Position, a.Time.UTC().Format(TimeFormat))
		return c, nil
	}
	env, err := readOne(ctx, log, a.Position)
	if err != nil {
		c.Status = AnchorRewritten
		c.Problem = fmt.Sprintf("the anchored position %d cannot be read: %v", a.Position, err)
		return c, nil
	}
	c.Found = env.Hash
	if env.Hash != a.Hash {
		c.Status = AnchorRewritten
		c.Problem = fmt.Sprintf("position %d hashes %s, the anchor (%s) says %s: the log was rewritten at or before it",
			a.Position, env.Hash, a.Time.UTC().Format(TimeFormat), a.Hash)
		return c, nil
	}
	c.Status = AnchorHeld
	return c, nil
}
