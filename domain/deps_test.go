package domain_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestImportsStdlibOnly keeps the domain pure: its non-test files import only
// the standard library, and none of the packages that do I/O or read clocks
// and randomness.
func TestImportsStdlibOnly(t *testing.T) {
	banned := []string{"os", "io", "net", "net/http", "log", "log/slog", "math/rand", "math/rand/v2",
		"crypto/rand", "syscall", "os/exec", "context", "sync", "unsafe", "reflect"}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, clock := range []string{"time.Now(", "time.Since(", "time.Until(", "time.After(", "time.Sleep("} {
			if strings.Contains(string(src), clock) {
				t.Errorf("%s calls %s: time arrives in commands", file, clock)
			}
		}
		f, err := parser.ParseFile(token.NewFileSet(), file, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if first, _, _ := strings.Cut(path, "/"); strings.Contains(first, ".") {
				t.Errorf("%s imports %s: domain imports only the standard library", file, path)
			}
			if slices.Contains(banned, path) {
				t.Errorf("%s imports %s: domain does no I/O and reads no clock or randomness", file, path)
			}
		}
	}
}
