package secrets_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/agent/mask"
	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/secrets"
)

var _ core.SecretResolver = (*secrets.Store)(nil)

func open(t *testing.T, dir string, opts secrets.Options) *secrets.Store {
	t.Helper()
	s, err := secrets.Open(dir, opts)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	return s
}

func TestSetResolveReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := open(t, dir, secrets.Options{Clock: func() time.Time { return at }})
	if _, created, err := s.Set(ctx, "prod/db-password", "hunter2-very-secret"); err != nil || !created {
		t.Fatalf("Set() = %v, %v", created, err)
	}
	if _, created, err := s.Set(ctx, "prod/db-password", "hunter3-very-secret"); err != nil || created {
		t.Fatalf("Set(again) = %v, %v, want replaced", created, err)
	}
	if _, _, err := s.Set(ctx, "api.token", "tok_123456"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Resolve(ctx, []string{"prod/db-password", "api.token", "api.token"})
	if err != nil || got["prod/db-password"] != "hunter3-very-secret" || got["api.token"] != "tok_123456" || len(got) != 2 {
		t.Fatalf("Resolve() = %v, %v", got, err)
	}

	// Encrypted at rest: no value in clear, key and data files are 0600.
	raw, err := os.ReadFile(filepath.Join(dir, secrets.DataFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("hunter")) || bytes.Contains(raw, []byte("tok_123456")) {
		t.Fatalf("data file holds a value in clear:\n%s", raw)
	}
	for _, f := range []string{secrets.DataFile, secrets.KeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, %v, want 0600", f, fi.Mode().Perm(), err)
		}
	}

	// Reopen with the same key file.
	s2 := open(t, dir, secrets.Options{})
	got, err = s2.Resolve(ctx, []string{"api.token"})
	if err != nil || got["api.token"] != "tok_123456" {
		t.Fatalf("Resolve() after reopen = %v, %v", got, err)
	}
	list, err := s2.List(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "api.token" || list[1].Name != "prod/db-password" || !list[1].CreatedAt.Equal(at) {
		t.Fatalf("List() = %+v, %v", list, err)
	}

	if err := s2.Delete(ctx, "api.token"); err != nil {
		t.Fatal(err)
	}
	if err := s2.Delete(ctx, "api.token"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("Delete(twice) = %v, want ErrNotFound", err)
	}
	_, err = s2.Resolve(ctx, []string{"zeta", "api.token", "prod/db-password", "alpha"})
	var me *secrets.MissingError
	if !errors.As(err, &me) || !errors.Is(err, secrets.ErrNotFound) || strings.Join(me.Names, ",") != "alpha,api.token,zeta" {
		t.Fatalf("Resolve(missing) = %v, want MissingError naming alpha, api.token, zeta", err)
	}
}

func TestKeyFromOptionsAndWrongKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := secrets.NewKey()
	parsed, err := secrets.ParseKey(base64.StdEncoding.EncodeToString(key) + "\n")
	if err != nil || !bytes.Equal(parsed, key) {
		t.Fatalf("ParseKey() = %x, %v", parsed, err)
	}
	s := open(t, dir, secrets.Options{Key: key})
	if _, _, err := s.Set(ctx, "a", "abcdefgh"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, secrets.KeyFile)); !os.IsNotExist(err) {
		t.Fatalf("a key file was written although the key was given: %v", err)
	}
	if _, err := secrets.Open(dir, secrets.Options{Key: secrets.NewKey()}); !errors.Is(err, secrets.ErrWrongKey) {
		t.Fatalf("Open(wrong key) = %v, want ErrWrongKey", err)
	}
	// The data file exists, the key file does not: refuse to invent a key.
	if _, err := secrets.Open(dir, secrets.Options{}); !errors.Is(err, secrets.ErrWrongKey) || !strings.Contains(err.Error(), secrets.EnvKey) {
		t.Fatalf("Open(no key file) = %v, want ErrWrongKey naming %s", err, secrets.EnvKey)
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == secrets.EnvKey {
				return v
			}
			return ""
		}
	}
	if k, err := secrets.KeyFromEnv(env("")); k != nil || err != nil {
		t.Fatalf("KeyFromEnv(unset) = %x, %v", k, err)
	}
	if k, err := secrets.KeyFromEnv(env(base64.StdEncoding.EncodeToString(key))); err != nil || !bytes.Equal(k, key) {
		t.Fatalf("KeyFromEnv() = %x, %v", k, err)
	}
	if _, err := secrets.KeyFromEnv(env("c2hvcnQ=")); err == nil || !strings.Contains(err.Error(), secrets.EnvKey) || strings.Contains(err.Error(), "c2hvcnQ") {
		t.Fatalf("KeyFromEnv(bad) = %v, want an error naming %s without the value", err, secrets.EnvKey)
	}
	for _, bad := range []string{"not base64!", base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := secrets.ParseKey(bad); !errors.Is(err, secrets.ErrInvalid) {
			t.Fatalf("ParseKey(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := secrets.Open(t.TempDir(), secrets.Options{Key: []byte("short")}); !errors.Is(err, secrets.ErrInvalid) {
		t.Fatalf("Open(short key) = %v", err)
	}
}

func TestKeyFileReadableByOthersIsRefused(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, secrets.Options{})
	if err := os.Chmod(filepath.Join(dir, secrets.KeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := secrets.Open(dir, secrets.Options{}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Open(0644 key file) = %v, want a chmod hint", err)
	}
}

func TestTamperedValueIsCorrupt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir, secrets.Options{})
	for _, n := range []string{"one", "two"} {
		if _, _, err := s.Set(ctx, n, "value-of-"+n); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, secrets.DataFile)
	raw, _ := os.ReadFile(path)
	var f map[string]any
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	m := f["secrets"].(map[string]any)
	m["one"].(map[string]any)["sealed"], m["two"].(map[string]any)["sealed"] = m["two"].(map[string]any)["sealed"], m["one"].(map[string]any)["sealed"]
	raw, _ = json.Marshal(f)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, dir, secrets.Options{})
	if _, err := s2.Resolve(ctx, []string{"one"}); !errors.Is(err, secrets.ErrCorrupt) {
		t.Fatalf("Resolve(swapped value) = %v, want ErrCorrupt", err)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := secrets.Open(dir, secrets.Options{}); !errors.Is(err, secrets.ErrCorrupt) {
		t.Fatalf("Open(garbage) = %v, want ErrCorrupt", err)
	}
}

func TestBadInputNamesTheFieldNeverTheValue(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), secrets.Options{})
	tests := []struct {
		name, value, field string
	}{
		{"", "long enough", "name"},
		{"-leading", "long enough", "name"},
		{"has space", "long enough", "name"},
		{strings.Repeat("a", 254), "long enough", "name"},
		{"ok", "12345", "value"},
		{"ok", "  abc   \n", "value"},
		{"ok", "abcdef\x00gh", "value"},
		{"ok", "abcdef\xffgh", "value"},
		{"ok", strings.Repeat("x", secrets.MaxValueBytes+1), "value"},
	}
	for _, tt := range tests {
		_, _, err := s.Set(ctx, tt.name, tt.value)
		var fe *secrets.FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field || !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("Set(%.20q, %.20q) = %v, want a FieldError on %s", tt.name, tt.value, err, tt.field)
			continue
		}
		if len(tt.value) >= 4 && strings.Contains(err.Error(), strings.TrimSpace(tt.value)) {
			t.Errorf("Set() error shows the value: %v", err)
		}
	}
	if list, _ := s.List(ctx); len(list) != 0 {
		t.Fatalf("bad input stored something: %+v", list)
	}
}

// The store accepts exactly what the agent can mask, and names exactly what
// job specs can name.
func TestConsistentWithMaskerAndJobSpecs(t *testing.T) {
	if secrets.MinValueBytes != mask.MinSecretLen {
		t.Fatalf("MinValueBytes = %d, agent masker's MinSecretLen = %d", secrets.MinValueBytes, mask.MinSecretLen)
	}
	names := []string{"a", "A9", "prod/db-password", "x.y_z-1", "-a", "a-", "a b", "a\x00", "/a", "é", strings.Repeat("n", 253), strings.Repeat("n", 254), ""}
	for _, n := range names {
		spec := domain.JobSpec{Name: "j", Script: "true", Secrets: map[string]string{"PW": n}}
		specOK := spec.Validate() == nil
		if ok := secrets.ValidateName(n) == nil; ok != specOK {
			t.Errorf("ValidateName(%q) ok = %v, job spec accepts it = %v", n, ok, specOK)
		}
	}
}
