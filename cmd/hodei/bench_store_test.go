package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestBenchStoreJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"bench", "store", "-o", "json", "--dir", t.TempDir(),
		"--events", "100", "--duration", "100ms", "--appenders", "1,2", "--repeat", "1"}, nil, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("hodei bench store = exit %d, stderr:\n%s", code, stderr.String())
	}
	var res map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, stdout.String())
	}
	for _, f := range []string{"events_per_sec", "raw_events_per_sec", "ratio"} {
		m, ok := res[f].(map[string]any)
		if !ok || m["1"] == nil || m["2"] == nil {
			t.Errorf("%s = %v, want an object keyed by appender count", f, res[f])
		}
	}
	if _, ok := res["read_events_per_sec"].(float64); !ok {
		t.Errorf("read_events_per_sec = %v, want a number", res["read_events_per_sec"])
	}
}

func TestBenchStoreText(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"bench", "store", "--dir", t.TempDir(),
		"--events", "50", "--duration", "100ms", "--appenders", "1", "--repeat", "1"}, nil, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("hodei bench store = exit %d, stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "appenders") || !strings.Contains(stdout.String(), "read scan") {
		t.Fatalf("text output lacks the table:\n%s", stdout.String())
	}
}

func TestBenchStoreUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "store", "-o", "yaml"},
		{"bench", "store", "--events", "0"},
		{"bench", "store", "--appenders", "0"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), args, nil, &stdout, &stderr); code != exitUsage {
			t.Errorf("hodei %s = exit %d, want %d (usage)", strings.Join(args, " "), code, exitUsage)
		}
	}
}
