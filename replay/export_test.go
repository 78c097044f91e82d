package replay_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/bolt"
	"github.com/hodei-jobs/hodei/eventstore/eventstoretest"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/replay"
)

func exportAll(t *testing.T, log replay.Log, opts replay.ExportOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := replay.Export(context.Background(), log, &buf, opts); err != nil {
		t.Fatalf("Export() error = %v", err)
	}
	return buf.Bytes()
}

// TestExportImportRoundTrip exports the recorded log, imports it into an
// empty bbolt store and exports that: the logs, the heads and the two
// exports are identical.
func TestExportImportRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := loadRecorded(t)
	// Events of a type this binary does not know travel too.
	for i := 0; i < 3; i++ {
		if _, err := src.Append(ctx, "audit-x", eventstore.Any, []eventstore.EventData{eventstoretest.Event("test.unknown", 20)}); err != nil {
			t.Fatal(err)
		}
	}
	first := exportAll(t, src, replay.ExportOptions{})

	dst, err := bolt.Open(filepath.Join(t.TempDir(), "events.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	rep, err := replay.Import(ctx, dst, bytes.NewReader(first), replay.ImportOptions{BatchEvents: 7})
	if err != nil {
		t.Fatalf("Import() error = %v", err)
	}
	srcHead, _ := src.Head(ctx)
	if rep.Head != srcHead || rep.Events != srcHead.Position {
		t.Fatalf("Import() = %+v, want %d events and head %s", rep, srcHead.Position, srcHead.Hash)
	}
	a, _ := src.ReadAll(ctx, 1, 1000)
	b, _ := dst.ReadAll(ctx, 1, 1000)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Fatalf("imported log differs (-source +imported):\n%s", diff)
	}
	if second := exportAll(t, dst, replay.ExportOptions{}); !bytes.Equal(first, second) {
		t.Fatal("export of the imported log differs from the export it was imported from")
	}
	if v, err := replay.Verify(ctx, dst, nil); err != nil || !v.OK() {
		t.Fatalf("Verify(imported) = %+v, %v", v, err)
	}
}

func TestExportRange(t *testing.T) {
	src := loadRecorded(t)
	out := exportAll(t, src, replay.ExportOptions{From: 10, To: 19})
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 10 {
		t.Fatalf("Export(10..19) wrote %d lines, want 10", len(lines))
	}
	var r replay.Record
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil || r.Position != 10 {
		t.Fatalf("first record = %+v, %v; want position 10", r, err)
	}
	if !strings.Contains(lines[0], `"time":"2026-03-02T09:00:02.500000000Z"`) {
		t.Errorf("time not in RFC 3339 with nanoseconds: %s", lines[0])
	}
	if _, err := replay.Export(context.Background(), src, &bytes.Buffer{}, replay.ExportOptions{To: 67}); err == nil {
		t.Error("Export(to past the head) succeeded")
	}
	// A range from position > 1 cannot be imported into an empty store.
	_, err := replay.Import(context.Background(), memory.New(memory.Options{}), bytes.NewReader(out), replay.ImportOptions{})
	if err == nil || !strings.Contains(err.Error(), "only an export from position 1") {
		t.Fatalf("Import(partial export) error = %v", err)
	}
}

// TestImportRefuses: a changed export is refused before anything is
// written, naming the position.
func TestImportRefuses(t *testing.T) {
	clean := exportAll(t, loadRecorded(t), replay.ExportOptions{})
	lines := strings.Split(strings.TrimSpace(string(clean)), "\n")
	edit := func(i int, fn func(m map[string]any)) []string {
		out := append([]string(nil), lines...)
		var m map[string]any
		if err := json.Unmarshal([]byte(out[i]), &m); err != nil {
			t.Fatal(err)
		}
		fn(m)
		b, _ := json.Marshal(m)
		out[i] = string(b)
		return out
	}
	cases := []struct {
		name  string
		lines []string
		want  string
	}{
		{"edited payload JSON", edit(20, func(m map[string]any) {
			m["payload"].(map[string]any)["reason"] = "nothing to see"
		}), "position 21 (line 21): payload does not match payload_msgpack"},
		{"edited payload bytes", edit(20, func(m map[string]any) {
			p, _ := base64.StdEncoding.DecodeString(m["payload_msgpack"].(string))
			p[len(p)-1] ^= 1
			m["payload_msgpack"] = base64.StdEncoding.EncodeToString(p)
		}), "position 21"},
		{"edited actor", edit(30, func(m map[string]any) { m["actor"] = "user:mallory" }), "position 31 (line 31): hash does not match content"},
		{"deleted line", append(append([]string(nil), lines[:40]...), lines[41:]...), "position 41"},
		{"swapped lines", func() []string {
			out := append([]string(nil), lines...)
			out[10], out[11] = out[11], out[10]
			return out
		}(), "position 11"},
		{"unknown field", edit(5, func(m map[string]any) { m["extra"] = 1 }), "line 6"},
		{"not JSON", append(append([]string(nil), lines[:3]...), "{nope"), "line 4"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := memory.New(memory.Options{})
			_, err := replay.Import(context.Background(), dst, strings.NewReader(strings.Join(c.lines, "\n")+"\n"), replay.ImportOptions{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Import() error = %v, want one naming %q", err, c.want)
			}
			var ie *replay.ImportError
			if !errors.As(err, &ie) {
				t.Errorf("Import() error is %T, want *ImportError", err)
			}
			if h, _ := dst.Head(context.Background()); h.Position != 0 {
				t.Errorf("Import() refused but wrote %d events", h.Position)
			}
		})
	}
}

func TestImportRefusesNonEmptyStore(t *testing.T) {
	clean := exportAll(t, loadRecorded(t), replay.ExportOptions{})
	dst := loadRecorded(t)
	_, err := replay.Import(context.Background(), dst, bytes.NewReader(clean), replay.ImportOptions{})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Import(into a non-empty store) error = %v", err)
	}
}

func TestExportRefusesDamagedLog(t *testing.T) {
	log := sampleLog(t)
	log[16].Payload = append([]byte(nil), log[16].Payload...)
	log[16].Payload[3] ^= 0x20
	_, err := replay.Export(context.Background(), headed{tampered{log}}, &bytes.Buffer{}, replay.ExportOptions{})
	if err == nil || !strings.Contains(err.Error(), "position 17") {
		t.Fatalf("Export(damaged log) error = %v, want one naming position 17", err)
	}
}

// headed adds Head to a tampered log.
type headed struct{ tampered }

func (h headed) Head(context.Context) (eventstore.Head, error) {
	l := h.log[len(h.log)-1]
	return eventstore.Head{Position: l.Position, Hash: l.Hash}, nil
}
