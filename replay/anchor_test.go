package replay_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/eventstoretest"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/replay"
)

func TestAnchorKeyCreatedOnceWithMode0600(t *testing.T) {
	dir := t.TempDir()
	k1, err := replay.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, replay.KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("anchor.key mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	k2, err := replay.LoadOrCreateKey(dir)
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("second LoadOrCreateKey = a different key (%v)", err)
	}
	pub, err := replay.DataDirPublicKey(dir)
	if err != nil || !pub.Equal(k1.Public()) {
		t.Fatalf("DataDirPublicKey = %v, %v; want the key's public half", pub, err)
	}
	if err := os.Chmod(filepath.Join(dir, replay.KeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := replay.LoadOrCreateKey(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("LoadOrCreateKey(world-readable key) error = %v", err)
	}
}

func TestAnchorSignatureAndFile(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	head := eventstore.Head{Position: 42, Hash: eventstore.Hash{1, 2, 3}}
	a := replay.SignAnchor(head, key, time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC))
	path := filepath.Join(t.TempDir(), "a.json")
	if err := replay.WriteAnchorFile(path, a); err != nil {
		t.Fatal(err)
	}
	got, err := replay.ReadAnchorFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	if err := got.Verify(pub); err != nil {
		t.Fatalf("Verify(read back) error = %v", err)
	}
	if got.Position != 42 || got.Hash != head.Hash || !got.Time.Equal(a.Time) {
		t.Fatalf("read back %+v, want %+v", got, a)
	}
	if err := got.Verify(other); err == nil || !strings.Contains(err.Error(), "signed by key") {
		t.Errorf("Verify(other key) error = %v", err)
	}
	// Any edit to the signed fields breaks the signature.
	for name, edit := range map[string]func(*replay.Anchor){
		"position": func(a *replay.Anchor) { a.Position = 41 },
		"hash":     func(a *replay.Anchor) { a.Hash[0] ^= 1 },
		"time":     func(a *replay.Anchor) { a.Time = a.Time.Add(time.Nanosecond) },
	} {
		b := got
		edit(&b)
		if err := b.Verify(pub); err == nil || !strings.Contains(err.Error(), "not valid") {
			t.Errorf("Verify(edited %s) error = %v", name, err)
		}
	}
	// Malformed files are refused with the field named.
	raw, _ := os.ReadFile(path)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	m["hash"] = "xyz"
	bad, _ := json.Marshal(m)
	if err := json.Unmarshal(bad, &replay.Anchor{}); err == nil || !strings.Contains(err.Error(), "hash") {
		t.Errorf("Unmarshal(bad hash) error = %v", err)
	}
}

func appendN(t *testing.T, s eventstore.Store, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := s.Append(context.Background(), "job-x", eventstore.Any, []eventstore.EventData{eventstoretest.Event("test.happened", 10)}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheckAnchor(t *testing.T) {
	ctx := context.Background()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	s := memory.New(memory.Options{})
	appendN(t, s, 30)
	a, err := replay.NewAnchor(ctx, s, key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 5) // the log grows after the anchor: still fine
	if c, err := replay.CheckAnchor(ctx, s, a); err != nil || !c.OK() || c.Head.Position != 35 {
		t.Fatalf("CheckAnchor(grown log) = %+v, %v; want ok at head 35", c, err)
	}

	// The tail cut off: a log holding only the first 20 events.
	log, _ := s.ReadAll(ctx, 1, 100)
	cut := headed{tampered{log[:20]}}
	c, err := replay.CheckAnchor(ctx, cut, a)
	if err != nil || c.Status != replay.AnchorTruncated || !strings.Contains(c.Problem, "ends at position 20, before the anchored position 30") {
		t.Fatalf("CheckAnchor(truncated) = %+v, %v", c, err)
	}

	// Rewritten: an event before the anchor changed and the chain rehashed
	// from there, so the chain alone verifies.
	rw := append([]eventstore.Envelope(nil), log...)
	rw[9].Actor = "user:mallory"
	for i := 9; i < len(rw); i++ {
		if i > 0 {
			rw[i].PrevHash = rw[i-1].Hash
		}
		rw[i].Hash = eventstore.ChainHash(&rw[i])
	}
	if rep, err := replay.Verify(ctx, tampered{rw}, nil); err != nil || !rep.OK() {
		t.Fatalf("the rewritten log should pass the chain check alone: %+v, %v", rep, err)
	}
	c, err = replay.CheckAnchor(ctx, headed{tampered{rw}}, a)
	if err != nil || c.Status != replay.AnchorRewritten || !strings.Contains(c.Problem, "position 30 hashes") {
		t.Fatalf("CheckAnchor(rewritten) = %+v, %v", c, err)
	}
}

func TestAnchorerWritesWhenTheHeadMoves(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	s := memory.New(memory.Options{})
	appendN(t, s, 3)
	dir := filepath.Join(t.TempDir(), "anchors")
	written := make(chan replay.Anchor, 16)
	an := &replay.Anchorer{Store: s, Key: key, Dir: dir, Every: time.Hour, Keep: 2,
		OnWrite: func(a replay.Anchor, _ string) { written <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- an.Run(ctx) }()
	if a := <-written; a.Position != 3 {
		t.Fatalf("first anchor at %d, want 3", a.Position)
	}
	appendN(t, s, 2)
	cancel() // the anchorer writes the head once more as it stops
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if a := <-written; a.Position != 5 {
		t.Fatalf("final anchor at %d, want 5", a.Position)
	}
	// Nothing new: WriteNow writes nothing.
	if _, path, err := an.WriteNow(context.Background()); err != nil || path != "" {
		t.Fatalf("WriteNow(unchanged head) = %q, %v", path, err)
	}
	appendN(t, s, 1)
	if _, _, err := an.WriteNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "anchor-00000000000000000005.json anchor-00000000000000000006.json" {
		t.Fatalf("anchor dir holds %v, want the newest two", names)
	}
	a, err := replay.ReadAnchorFile(filepath.Join(dir, names[1]))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Verify(key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	if c, err := replay.CheckAnchor(context.Background(), s, a); err != nil || !c.OK() {
		t.Fatalf("CheckAnchor(written anchor) = %+v, %v", c, err)
	}
}
