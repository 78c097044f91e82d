package replay

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DefaultAnchorEvery is how often an Anchorer anchors the head by default.
const DefaultAnchorEvery = 10 * time.Minute

// Anchorer writes a signed anchor of the log's head into Dir every Every,
// when the head has moved since the last one, and once more when it stops.
// Dir should be somewhere the log's own storage is not (another volume, a
// mount synced off the machine): an attacker who can rewrite the log should
// not be able to rewrite the anchors too.
//
// Files are named anchor-<position, 20 digits>.json and written atomically;
// `hodei replay verify --anchor FILE` checks a log against one.
type Anchorer struct {
	// Store is the log whose head is anchored (every eventstore.Store).
	Store Header
	// Key signs the anchors (LoadOrCreateKey).
	Key ed25519.PrivateKey
	// Dir receives the anchor files; it is created (0700) if missing.
	Dir string
	// Every is the interval between anchors (default DefaultAnchorEvery).
	Every time.Duration
	// Keep, when positive, keeps only the newest Keep anchor files in Dir.
	Keep int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger reports failed writes, which are retried at the next tick
	// (default slog.Default()).
	Logger *slog.Logger
	// OnWrite, when set, is called after each anchor file is written.
	OnWrite func(a Anchor, path string)

	last uint64 // position of the last anchor written
}

// Run anchors the head now and then every a.Every until ctx ends, then once
// more. It returns an error only for a bad configuration or a Dir it cannot
// create; a failed write is logged and retried at the next tick, so an
// anchor volume that is briefly unavailable does not stop the server.
func (a *Anchorer) Run(ctx context.Context) error {
	if a.Store == nil || len(a.Key) != ed25519.PrivateKeySize || a.Dir == "" {
		return errors.New("anchorer: Store, Key and Dir are required")
	}
	if a.Every <= 0 {
		a.Every = DefaultAnchorEvery
	}
	if a.Now == nil {
		a.Now = time.Now
	}
	if a.Logger == nil {
		a.Logger = slog.Default()
	}
	if err := os.MkdirAll(a.Dir, 0o700); err != nil {
		return fmt.Errorf("anchorer: %w", err)
	}
	a.tick(ctx)
	t := time.NewTicker(a.Every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			a.tick(ctx)
		case <-ctx.Done():
			// One last anchor of the head the server stops at.
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			a.tick(final)
			cancel()
			return nil
		}
	}
}

func (a *Anchorer) tick(ctx context.Context) {
	anc, path, err := a.WriteNow(ctx)
	switch {
	case err != nil:
		a.Logger.Warn("anchor not written; retrying at the next tick", "dir", a.Dir, "err", err)
	case path != "":
		a.Logger.Debug("anchor written", "path", path, "position", anc.Position, "hash", anc.Hash.String())
	}
}

// WriteNow writes an anchor of the current head, unless the head is where the
// last anchor put it (or the log is empty): then path is "".
func (a *Anchorer) WriteNow(ctx context.Context) (anc Anchor, path string, err error) {
	head, err := a.Store.Head(ctx)
	if err != nil {
		return anc, "", fmt.Errorf("anchor: head: %w", err)
	}
	if head.Position == 0 || head.Position == a.last {
		return anc, "", nil
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	anc = SignAnchor(head, a.Key, now())
	path = filepath.Join(a.Dir, fmt.Sprintf("anchor-%020d.json", head.Position))
	if err := WriteAnchorFile(path, anc); err != nil {
		return anc, "", err
	}
	a.last = head.Position
	if a.Keep > 0 {
		a.prune()
	}
	if a.OnWrite != nil {
		a.OnWrite(anc, path)
	}
	return anc, path, nil
}

// prune removes all but the newest Keep anchor files.
func (a *Anchorer) prune() {
	ents, err := os.ReadDir(a.Dir)
	if err != nil {
		return
	}
	var names []string
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, "anchor-") && strings.HasSuffix(n, ".json") && len(n) == len("anchor-.json")+20 {
			names = append(names, n)
		}
	}
	slices.Sort(names) // fixed-width positions: oldest first
	for len(names) > a.Keep {
		_ = os.Remove(filepath.Join(a.Dir, names[0]))
		names = names[1:]
	}
}
