package agent_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAgentSpeaksOnlyTheProtocol guards the import direction: the agent (and
// its binary) may use the generated protocol package, its own packages and
// the standard-library-only internal/atomicfile, nothing else of this
// module, so it never links the server.
func TestAgentSpeaksOnlyTheProtocol(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/hodei-jobs/hodei/agent/...", "github.com/hodei-jobs/hodei/cmd/hodei-agent").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const mod = "github.com/hodei-jobs/hodei/"
	allowed := []string{mod + "agent", mod + "hwp/hwppb", mod + "cmd/hodei-agent", mod + "internal/atomicfile"}
	for _, p := range strings.Fields(string(out)) {
		if !strings.HasPrefix(p, mod) {
			continue
		}
		ok := false
		for _, a := range allowed {
			if p == a || strings.HasPrefix(p, a+"/") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("the agent depends on %s; it may import only %v", p, allowed)
		}
	}
}
