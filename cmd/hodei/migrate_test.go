package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/bolt"
	"github.com/hodei-jobs/hodei/eventstore/eventstoretest"
	"github.com/hodei-jobs/hodei/eventstore/postgres"
	"github.com/hodei-jobs/hodei/eventstore/postgres/pgtest"
)

func runHodei(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := Main(ctx, args, nil, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// appendLog appends n events over 3 streams to the closed bbolt log in dir.
func appendLog(t *testing.T, dir string, n int) {
	t.Helper()
	s, err := bolt.Open(filepath.Join(dir, eventsFile), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	evs := make([]eventstore.EventData, n)
	for i := range evs {
		evs[i] = eventstoretest.Event("test.later", 30)
	}
	if _, err := s.Append(context.Background(), "job-later", eventstore.Any, evs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// logOf reads every envelope and the head of the event log in dir (bbolt)
// or at dsn (PostgreSQL).
func logOf(t *testing.T, dir, dsn string) ([]eventstore.Envelope, eventstore.Head) {
	t.Helper()
	ctx := context.Background()
	s, err := openStore(ctx, dir, dsn, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out []eventstore.Envelope
	for from := uint64(1); ; {
		page, err := s.ReadAll(ctx, from, 5000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		out = append(out, page...)
		from = page[len(page)-1].Position + 1
	}
	h, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return out, h
}

func sameLogs(t *testing.T, dir, dsn string) eventstore.Head {
	t.Helper()
	a, ha := logOf(t, dir, "")
	b, hb := logOf(t, "", dsn)
	if ha != hb || len(a) != len(b) {
		t.Fatalf("bolt log: %d events, head %+v; postgres: %d events, head %+v", len(a), ha, len(b), hb)
	}
	for i := range a {
		if !bytes.Equal(eventstore.MarshalEnvelope(nil, &a[i]), eventstore.MarshalEnvelope(nil, &b[i])) {
			t.Fatalf("position %d differs between the logs", a[i].Position)
		}
	}
	return ha
}

func TestMigrate(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 120)
	dsn := pgtest.NewDatabase(t)

	code, stdout, stderr := runHodei(t, "migrate", "--from", dir, "--to", dsn, "-o", "json", "--batch", "50")
	if code != exitOK {
		t.Fatalf("hodei migrate = exit %d:\n%s%s", code, stdout, stderr)
	}
	var res struct {
		OK           bool    `json:"ok"`
		Copied       uint64  `json:"copied"`
		ResumedFrom  uint64  `json:"resumed_from"`
		Batches      int     `json:"batches"`
		HeadPosition uint64  `json:"head_position"`
		HeadHash     string  `json:"head_hash"`
		Rate         float64 `json:"events_per_sec"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, stdout)
	}
	head := sameLogs(t, dir, dsn)
	if !res.OK || res.Copied != 120 || res.ResumedFrom != 0 || res.Batches != 3 || res.HeadPosition != 120 ||
		res.HeadHash != head.Hash.String() || res.Rate <= 0 {
		t.Fatalf("hodei migrate -o json = %+v, want 120 events copied in 3 batches to head %s", res, head.Hash)
	}

	// Nothing to do the second time; new events in the source are copied
	// on, as after an interruption.
	code, stdout, stderr = runHodei(t, "migrate", "--from", dir, "--to", dsn)
	if code != exitOK || !strings.Contains(stdout, "already up to date: both logs end at position 120") {
		t.Fatalf("second hodei migrate = exit %d:\n%s%s", code, stdout, stderr)
	}
	appendLog(t, dir, 30)
	code, stdout, stderr = runHodei(t, "migrate", "--from", dir, "--to", dsn)
	head = sameLogs(t, dir, dsn)
	if code != exitOK || !strings.Contains(stdout, "resumed after position 120: copied 30 events (positions 121-150)") ||
		!strings.Contains(stdout, "verified: both logs end at position 150, hash "+head.Hash.String()) {
		t.Fatalf("hodei migrate of a grown log = exit %d:\n%s%s", code, stdout, stderr)
	}
	t.Logf("hodei migrate:\n%s", stdout)

	// The copy passes the audit, and a server can append to it.
	code, stdout, stderr = runHodei(t, "replay", "verify", "--postgres", dsn)
	if code != exitOK || !strings.Contains(stdout, "ok: 150 events in 6 streams") {
		t.Fatalf("hodei replay verify --postgres = exit %d:\n%s%s", code, stdout, stderr)
	}
	s, err := postgres.Open(context.Background(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, err := s.Append(context.Background(), "job-later", eventstore.Exact(30), []eventstore.EventData{eventstoretest.Event("t", 1)}); err != nil || r.FirstPosition != 151 {
		t.Fatalf("Append after migrating = %+v, %v", r, err)
	}
}

func TestMigrateRefusesAnotherHistory(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	writeLog(t, a, 40)
	writeLog(t, b, 40)
	dsn := pgtest.NewDatabase(t)
	if code, stdout, stderr := runHodei(t, "migrate", "--from", a, "--to", dsn); code != exitOK {
		t.Fatalf("hodei migrate = exit %d:\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr := runHodei(t, "migrate", "--from", b, "--to", dsn, "-o", "json")
	if code != exitFailure || !strings.Contains(stderr, "target has a different history at position 1") {
		t.Fatalf("hodei migrate of another log = exit %d, want 1 naming position 1:\n%s%s", code, stdout, stderr)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res["ok"] != false || res["diverged_at"] != float64(1) {
		t.Fatalf("-o json on refusal = %s (%v), want ok false, diverged_at 1", stdout, err)
	}
	sameLogs(t, a, dsn) // untouched
	t.Logf("refusal: %s", strings.TrimSpace(stderr))
}

func TestMigrateUsage(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"migrate", "--to", "postgres://x"}, exitUsage, "--from is required"},
		{[]string{"migrate", "--from", dir}, exitUsage, "--to is required"},
		{[]string{"migrate", "--from", dir, "--to", "postgres://x", "-o", "yaml"}, exitUsage, "--output"},
		{[]string{"migrate", "--from", dir, "--to", "postgres://x", "--batch", "0"}, exitUsage, "--batch 0"},
		{[]string{"migrate", "--from", dir, "--to", "postgres://x", "extra"}, exitUsage, "unknown command"},
		{[]string{"migrate", "--from", dir, "--to", "postgres://x"}, exitFailure, "no event log at"},
	} {
		code, stdout, stderr := runHodei(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("hodei %s = exit %d, want %d with %q:\n%s%s", strings.Join(c.args, " "), code, c.code, c.want, stdout, stderr)
		}
	}
}
