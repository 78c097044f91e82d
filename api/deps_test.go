package api_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the API a layer over the core: it talks to the event
// store through its port (never an adapter), and never to agents.
func TestImports(t *testing.T) {
	banned := []string{"github.com/hodei-jobs/hodei/eventstore/", "github.com/hodei-jobs/hodei/hwp",
		"github.com/hodei-jobs/hodei/agent", "github.com/hodei-jobs/hodei/server", "github.com/hodei-jobs/hodei/cmd/"}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, b := range banned {
				if strings.HasPrefix(path, b) {
					t.Errorf("%s imports %s", file, path)
				}
			}
		}
	}
}
