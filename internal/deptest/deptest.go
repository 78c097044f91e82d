// Package deptest guards the direction of imports between Hodei's layers.
// A guarded package has a small test that calls Check with the rule for its
// non-standard dependencies (see STYLE.md: domain imports only the standard
// library; projections, hwp and replay never import an adapter; agent speaks
// only the generated protocol package).
package deptest

import (
	"os/exec"
	"strings"
	"testing"
)

// Check lists the transitive non-standard-library dependencies of pkg (an
// import path) with `go list` and fails t for each one that allowed rejects.
func Check(t *testing.T, pkg string, allowed func(dep string) bool) {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == pkg {
			continue
		}
		if !allowed(dep) {
			t.Errorf("%s imports %s, which its layer must not depend on", pkg, dep)
		}
	}
}

// Module is the import path prefix of this module's packages.
const Module = "github.com/hodei-jobs/hodei/"

// NoAdapters allows anything except the event-store adapters and cmd.
func NoAdapters(dep string) bool {
	for _, banned := range []string{"eventstore/bolt", "eventstore/postgres", "eventstore/memory", "cmd/"} {
		if strings.HasPrefix(dep, Module+banned) {
			return false
		}
	}
	return true
}
