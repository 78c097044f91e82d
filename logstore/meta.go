package logstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// metaVersion is the schema version of "<attempt>.meta".
const metaVersion = 1

// meta is what the log file alone cannot say: that the log was truncated
// (and where the marker ends), and that it is finished (with the agent's
// totals). It is written only at those two moments, atomically (temp file,
// fsync, rename, fsync of the directory) and after the log itself is synced.
type meta struct {
	Version int `json:"v"`

	Truncated   bool   `json:"truncated,omitempty"`
	TruncatedAt uint64 `json:"truncated_at,omitempty"` // data bytes kept before the marker
	MarkerEnd   uint64 `json:"marker_end,omitempty"`   // stored size once the marker is written
	Received    uint64 `json:"received,omitempty"`     // agent bytes received when last written

	Finished   bool      `json:"finished,omitempty"`
	Sealed     bool      `json:"sealed,omitempty"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	AgentBytes uint64    `json:"agent_bytes,omitempty"`
	AgentCRC   uint32    `json:"agent_crc32c,omitempty"`
	StoredCRC  uint32    `json:"stored_crc32c,omitempty"`
	CRCChecked bool      `json:"crc_checked,omitempty"`
	Mismatch   bool      `json:"mismatch,omitempty"`
}

// readMeta returns the meta file at path; found is false when there is none.
func readMeta(path string) (m meta, found bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return meta{}, false, nil
	}
	if err != nil {
		return meta{}, false, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return meta{}, false, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	if m.Version != metaVersion {
		return meta{}, false, fmt.Errorf("%s: schema version %d, want %d", filepath.Base(path), m.Version, metaVersion)
	}
	return m, true, nil
}

// writeMeta replaces the meta file at path atomically and durably.
func writeMeta(path string, m meta) error {
	m.Version = metaVersion
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes the directory's entries (created or renamed files) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
