package provider

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/hodei-jobs/hodei/internal/atomicfile"
)

// OwnerFile holds a server's owner id in its data dir.
const OwnerFile = "owner.id"

var ownerRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// LoadOwner returns the owner id kept in dir, creating a random one on
// first use. Every instance the server starts carries it (LabelOwner), so
// a restarted server finds and sweeps exactly its own.
func LoadOwner(dir string) (string, error) {
	p := filepath.Join(dir, OwnerFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		id := "hodei-" + randHex(6)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("owner id: %w", err)
		}
		if err := atomicfile.Write(p, []byte(id+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("owner id: %w", err)
		}
		return id, nil
	}
	if err != nil {
		return "", fmt.Errorf("owner id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if !ownerRE.MatchString(id) {
		return "", fmt.Errorf("owner id in %s: %q is not a DNS label of 1-63 bytes [a-z0-9-]", p, id)
	}
	return id, nil
}
