package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/postgres/pgtest"
	"github.com/hodei-jobs/hodei/replay"
)

// recordedLog is the log testdata keeps (see testdata/README.md).
var recordedLog = filepath.Join("..", "..", "testdata", "eventlog", "v1")

// recordedDataDir returns a data dir holding a copy of the recorded bbolt log.
func recordedDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(recordedLog, eventsFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, eventsFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func hodei(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, nil, &out, &errb)
	return code, out.String(), errb.String()
}

func TestReplayTimeline(t *testing.T) {
	data := recordedDataDir(t)
	code, out, errs := hodei(t, "replay", "timeline", "--data", data, "--job", "j-7")
	if code != exitOK {
		t.Fatalf("timeline = exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"job j-7: 9 events (stream job-j-7)",
		"POSITION  VER  TIME",
		"39        5    2026-03-02T09:00:09.750Z  system:heartbeat  job.requeued   attempt 1 on w-4 ended without a result: agent-lost; re-queued",
		"scheduled attempt 2 on w-3, reserving 1 slot, 500m CPU, 256Mi (accept by 2026-03-02T09:00:40.000Z)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("timeline output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = hodei(t, "replay", "timeline", "--data", data, "--worker", "w-4", "-o", "json")
	var got struct {
		Stream string         `json:"stream"`
		Events []replay.Entry `json:"events"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &got) != nil || got.Stream != "worker-w-4" || len(got.Events) != 3 {
		t.Fatalf("timeline -o json = exit %d, %+v:\n%s", code, got, out)
	}
	if e := got.Events[1]; e.Type != "worker.lost" || e.Actor != "system:heartbeat" || e.Payload["reason"] != "missed-heartbeats" ||
		e.Time != "2026-03-02T09:00:09.500000000Z" || e.Position != 38 {
		t.Errorf("second event = %+v", e)
	}
	if code, _, errs := hodei(t, "replay", "timeline", "--data", data, "--job", "nope"); code != exitFailure || !strings.Contains(errs, "no events") {
		t.Errorf("timeline of a missing job = exit %d: %s", code, errs)
	}
	if code, _, _ := hodei(t, "replay", "timeline", "--data", data); code != exitUsage {
		t.Errorf("timeline without --job or --worker = exit %d, want %d", code, exitUsage)
	}
}

func TestReplayState(t *testing.T) {
	data := recordedDataDir(t)
	code, out, errs := hodei(t, "replay", "state", "--data", data, "--at", "40")
	if code != exitOK {
		t.Fatalf("state --at 40 = exit %d: %s", code, errs)
	}
	for _, want := range []string{"state at position 40 (2026-03-02T09:00:10.000Z)", "workers: 4 (3 online, 1 lost, 0 deregistered; 0 draining)",
		"jobs: 7 (scheduled 1, succeeded 2, failed 1, cancelled 1, timed_out 2)", "j-7  package  scheduled"} {
		if !strings.Contains(out, want) {
			t.Errorf("state output lacks %q:\n%s", want, out)
		}
	}
	// A time selects the last event at or before it: 09:00:10.3 is position 41.
	code, out, errs = hodei(t, "replay", "state", "--data", data, "--at", "2026-03-02T09:00:10.3Z", "--job", "j-7", "-o", "json")
	var got struct {
		Position uint64 `json:"position"`
		Exists   bool   `json:"exists"`
		Job      struct {
			Status   string `json:"status"`
			Attempt  int    `json:"attempt"`
			Attempts []struct {
				Worker string `json:"worker"`
				Result string `json:"result"`
			} `json:"attempts"`
		} `json:"job"`
		View struct {
			Status string `json:"status"`
			Seq    int    `json:"seq"`
		} `json:"view"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("state --job -o json = exit %d: %s\n%s", code, errs, out)
	}
	if got.Position != 41 || !got.Exists || got.Job.Status != "accepted" || got.Job.Attempt != 2 || len(got.Job.Attempts) != 2 ||
		got.Job.Attempts[0].Result != "requeued" || got.View.Status != "accepted" || got.View.Seq != 7 {
		t.Errorf("state --job j-7 at 41 = %+v", got)
	}
	if code, _, errs := hodei(t, "replay", "state", "--data", data, "--at", "30", "--job", "j-7"); code != exitFailure || !strings.Contains(errs, "had not been submitted") {
		t.Errorf("state --job before its submission = exit %d: %s", code, errs)
	}
	if code, _, _ := hodei(t, "replay", "state", "--data", data, "--at", "67"); code != exitFailure {
		t.Errorf("state --at past the head = exit %d, want 1", code)
	}
	if code, _, _ := hodei(t, "replay", "state", "--data", data, "--at", "yesterday"); code != exitUsage {
		t.Errorf("state --at yesterday = exit %d, want %d", code, exitUsage)
	}
	// The cache: a snapshot every 10 events, used by the next question.
	if code, _, errs := hodei(t, "replay", "state", "--data", data, "--at", "66", "--cache-every", "10", "-o", "json"); code != exitOK {
		t.Fatalf("state --at 66 = exit %d: %s", code, errs)
	}
	code, out, _ = hodei(t, "replay", "state", "--data", data, "--at", "65", "--cache-every", "10", "-o", "json")
	var cached struct {
		From     uint64 `json:"from_snapshot"`
		Replayed uint64 `json:"replayed"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &cached) != nil || cached.From != 60 || cached.Replayed != 5 {
		t.Errorf("state --at 65 after the cache was filled = exit %d, %+v; want from the snapshot at 60", code, cached)
	}
}

// TestReplayExportImportRoundTrip: export, import into an empty bbolt log,
// export again: identical files and head hash.
func TestReplayExportImportRoundTrip(t *testing.T) {
	data := recordedDataDir(t)
	tmp := t.TempDir()
	first := filepath.Join(tmp, "first.jsonl")
	if code, out, errs := hodei(t, "replay", "export", "--data", data, "--out", first); code != exitOK || !strings.Contains(out, "exported 66 events") {
		t.Fatalf("export = exit %d: %s%s", code, out, errs)
	}
	code, out, errs := hodei(t, "replay", "import", first, "--data", filepath.Join(tmp, "copy"), "-o", "json")
	var imp struct {
		OK     bool   `json:"ok"`
		Events uint64 `json:"events"`
		Head   string `json:"head_hash"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &imp) != nil || !imp.OK || imp.Events != 66 {
		t.Fatalf("import = exit %d: %s%s", code, out, errs)
	}
	code, second, errs := hodei(t, "replay", "export", "--data", filepath.Join(tmp, "copy"))
	if code != exitOK {
		t.Fatalf("export of the copy = exit %d: %s", code, errs)
	}
	want, _ := os.ReadFile(first)
	if second != string(want) {
		t.Fatal("the export of the imported log differs from the export it came from")
	}
	_, v1, _ := hodei(t, "replay", "verify", "--data", data, "-o", "json")
	_, v2, _ := hodei(t, "replay", "verify", "--data", filepath.Join(tmp, "copy"), "-o", "json")
	if v1 != v2 || !strings.Contains(v1, imp.Head) {
		t.Fatalf("verify of the original and the copy differ:\n%s%s", v1, v2)
	}
	// Into a log that is not empty: refused.
	if code, _, errs := hodei(t, "replay", "import", first, "--data", filepath.Join(tmp, "copy")); code != exitFailure || !strings.Contains(errs, "not empty") {
		t.Errorf("import into a non-empty log = exit %d: %s", code, errs)
	}
	// A changed export: refused, naming the position, and no log left behind.
	lines := strings.SplitAfter(string(want), "\n")
	lines[28] = strings.Replace(lines[28], `"actor":"user:alice"`, `"actor":"user:mallory"`, 1)
	bad := filepath.Join(tmp, "bad.jsonl")
	if err := os.WriteFile(bad, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(tmp, "refused")
	if code, _, errs := hodei(t, "replay", "import", bad, "--data", dst); code != exitFailure || !strings.Contains(errs, "position 29 (line 29): hash does not match content") {
		t.Errorf("import of a changed export = exit %d: %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dst, eventsFile)); err == nil {
		t.Error("a refused import left an events.db behind")
	}
}

// rehashFrom returns the export with the record at index i changed by edit
// and the chain recomputed from there: a rewrite the chain alone cannot
// reveal.
func rehashFrom(t *testing.T, export string, i int, edit func(*replay.Record)) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(export), "\n")
	var prev eventstore.Hash
	for k := range lines {
		var r replay.Record
		if err := json.Unmarshal([]byte(lines[k]), &r); err != nil {
			t.Fatal(err)
		}
		if k < i {
			continue
		}
		if k == i {
			edit(&r)
		}
		env, err := r.Envelope()
		if err != nil {
			t.Fatal(err)
		}
		if k > i {
			env.PrevHash = prev
		}
		env.Hash = eventstore.ChainHash(&env)
		prev = env.Hash
		b, _ := json.Marshal(replay.NewRecord(&env))
		lines[k] = string(b)
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestReplayVerifyAnchor(t *testing.T) {
	data := recordedDataDir(t)
	tmp := t.TempDir()
	anchor := filepath.Join(tmp, "anchor.json")
	if code, out, errs := hodei(t, "replay", "anchor", "--data", data, "--out", anchor); code != exitOK || !strings.Contains(out, "anchored position 66") {
		t.Fatalf("anchor = exit %d: %s%s", code, out, errs)
	}
	if st, err := os.Stat(filepath.Join(data, replay.KeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("anchor.key = %v, %v; want mode 0600", st, err)
	}
	pub := filepath.Join(data, replay.PublicKeyFile)
	if code, out, errs := hodei(t, "replay", "verify", "--data", data, "--anchor", anchor); code != exitOK || !strings.Contains(out, "anchor ok: position 66") {
		t.Fatalf("verify --anchor of the anchored log = exit %d: %s%s", code, out, errs)
	}
	_, export, _ := hodei(t, "replay", "export", "--data", data)
	logOf := func(name, content string) string {
		f := filepath.Join(tmp, name+".jsonl")
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(tmp, name)
		if code, _, errs := hodei(t, "replay", "import", f, "--data", dir); code != exitOK {
			t.Fatalf("import %s = exit %d: %s", name, code, errs)
		}
		return dir
	}
	lines := strings.SplitAfter(export, "\n")
	cases := []struct {
		name, dir, want string
	}{
		// The last 16 events cut off: a shorter log that is itself intact.
		{"truncated", logOf("truncated", strings.Join(lines[:50], "")),
			"log truncated: the log ends at position 50, before the anchored position 66"},
		// An event before the anchor changed and every hash after it
		// recomputed: the chain verifies, the anchor does not.
		{"rewritten", logOf("rewritten", rehashFrom(t, export, 44, func(r *replay.Record) { r.Actor = "user:mallory" })),
			"log rewritten: position 66 hashes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if code, out, errs := hodei(t, "replay", "verify", "--data", c.dir); code != exitOK {
				t.Fatalf("the %s log should pass the chain check alone: exit %d: %s%s", c.name, code, out, errs)
			}
			code, out, errs := hodei(t, "replay", "verify", "--data", c.dir, "--anchor", anchor, "--anchor-pubkey", pub)
			if code != exitFailure || !strings.Contains(errs, c.want) {
				t.Fatalf("verify --anchor of the %s log = exit %d, want exit 1 with %q:\n%s%s", c.name, code, c.want, out, errs)
			}
			t.Log(strings.TrimSpace(errs))
			code, out, _ = hodei(t, "replay", "verify", "--data", c.dir, "--anchor", anchor, "--anchor-pubkey", pub, "-o", "json")
			var got struct {
				OK     bool `json:"ok"`
				Anchor struct {
					Status string `json:"status"`
				} `json:"anchor"`
			}
			if code != exitFailure || json.Unmarshal([]byte(out), &got) != nil || got.OK || got.Anchor.Status != c.name {
				t.Errorf("verify --anchor -o json = exit %d: %s", code, out)
			}
		})
	}
	// An edited anchor is refused before the log is even considered.
	b, _ := os.ReadFile(anchor)
	forged := filepath.Join(tmp, "forged.json")
	if err := os.WriteFile(forged, bytes.Replace(b, []byte(`"position": 66`), []byte(`"position": 50`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := hodei(t, "replay", "verify", "--data", cases[0].dir, "--anchor", forged, "--anchor-pubkey", pub); code != exitFailure || !strings.Contains(errs, "signature is not valid") {
		t.Errorf("verify with a forged anchor = exit %d: %s", code, errs)
	}
}

func TestBenchReplayInProcess(t *testing.T) {
	code, out, errs := hodei(t, "bench", "replay", "--in-process", "--events", "3000", "--cache-every", "1000",
		"--runs", "1", "--dir", t.TempDir(), "-o", "json")
	if code != exitOK {
		t.Fatalf("bench replay = exit %d: %s", code, errs)
	}
	var res struct {
		Events  int     `json:"events"`
		Verify  float64 `json:"verify_events_per_sec"`
		StateMS float64 `json:"state_at_ms"`
		StateAt []struct {
			Position     uint64 `json:"position"`
			FromSnapshot uint64 `json:"from_snapshot"`
		} `json:"state_at"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("bench replay output is not one JSON object: %v\n%s", err, out)
	}
	if res.Events != 3000 || res.Verify <= 0 || res.StateMS <= 0 || len(res.StateAt) != 6 {
		t.Fatalf("bench replay = %+v", res)
	}
	for _, p := range res.StateAt {
		if p.FromSnapshot != p.Position/1000*1000 {
			t.Errorf("state --at %d started from %d, want the cache snapshot at %d", p.Position, p.FromSnapshot, p.Position/1000*1000)
		}
	}
}

// TestReplayImportPostgres moves the recorded log from bbolt to PostgreSQL
// through export and import: same head hash, byte-identical exports.
func TestReplayImportPostgres(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	data := recordedDataDir(t)
	file := filepath.Join(t.TempDir(), "log.jsonl")
	if code, _, errs := hodei(t, "replay", "export", "--data", data, "--out", file); code != exitOK {
		t.Fatalf("export = exit %d: %s", code, errs)
	}
	if code, out, errs := hodei(t, "replay", "import", file, "--postgres", dsn); code != exitOK || !strings.Contains(out, "imported 66 events") {
		t.Fatalf("import --postgres = exit %d: %s%s", code, out, errs)
	}
	_, fromBolt, _ := hodei(t, "replay", "verify", "--data", data, "-o", "json")
	_, fromPG, _ := hodei(t, "replay", "verify", "--postgres", dsn, "-o", "json")
	var a, b struct {
		OK   bool   `json:"ok"`
		Head string `json:"head_hash"`
	}
	if json.Unmarshal([]byte(fromBolt), &a) != nil || json.Unmarshal([]byte(fromPG), &b) != nil || !b.OK || a.Head != b.Head {
		t.Fatalf("verify: bbolt %s, postgres %s", fromBolt, fromPG)
	}
	code, export, errs := hodei(t, "replay", "export", "--postgres", dsn)
	want, _ := os.ReadFile(file)
	if code != exitOK || export != string(want) {
		t.Fatalf("export from PostgreSQL differs from the bbolt export (exit %d: %s)", code, errs)
	}
	if code, _, errs := hodei(t, "replay", "import", file, "--postgres", dsn); code != exitFailure || !strings.Contains(errs, "not empty") {
		t.Errorf("second import --postgres = exit %d: %s", code, errs)
	}
}
