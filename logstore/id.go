package logstore

import (
	"fmt"
	"path/filepath"
	"strconv"
)

// maxIDBytes matches domain's limit on job ids.
const maxIDBytes = 128

// key names one attempt's log.
type key struct {
	job     string
	attempt uint32
}

func (k key) String() string { return fmt.Sprintf("job %s attempt %d", k.job, k.attempt) }

// checkJobID applies domain.ValidateID's syntax: 1 to 128 bytes of ASCII
// letters, digits, '.', '_' and '-', starting with a letter or digit. The id
// becomes a directory name, so this is also what keeps "..", "/", NUL and
// friends out of paths. (Duplicated rather than imported so the log store
// depends on nothing; a test checks the two agree.)
func checkJobID(id string) error {
	reason := ""
	switch {
	case id == "":
		reason = "empty"
	case len(id) > maxIDBytes:
		reason = fmt.Sprintf("%d bytes, at most %d", len(id), maxIDBytes)
	default:
		for i := 0; i < len(id); i++ {
			c := id[i]
			alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
			if alnum || i > 0 && (c == '.' || c == '_' || c == '-') {
				continue
			}
			reason = fmt.Sprintf("byte %d (%q) is not allowed", i, c)
			break
		}
	}
	if reason == "" {
		return nil
	}
	v := id
	if len(v) > maxIDBytes+8 {
		v = v[:maxIDBytes+8] + "..."
	}
	return &FieldError{Field: "job_id", Value: v, Reason: reason}
}

// newKey validates a job id and an attempt; attempt 0 is allowed only when
// zeroOK (it then means "the latest attempt").
func newKey(job string, attempt uint32, zeroOK bool) (key, error) {
	if err := checkJobID(job); err != nil {
		return key{}, err
	}
	if attempt == 0 && !zeroOK {
		return key{}, &FieldError{Field: "attempt", Value: "0", Reason: "attempts are numbered from 1"}
	}
	return key{job: job, attempt: attempt}, nil
}

func (s *Store) jobDir(job string) string { return filepath.Join(s.dir, job) }

func (s *Store) logPath(k key) string {
	return filepath.Join(s.dir, k.job, strconv.FormatUint(uint64(k.attempt), 10)+".log")
}

func (s *Store) metaPath(k key) string {
	return filepath.Join(s.dir, k.job, strconv.FormatUint(uint64(k.attempt), 10)+".meta")
}

// parseLogName returns the attempt of a file named "<attempt>.log", written
// in canonical decimal (no sign, no leading zero), or false.
func parseLogName(name string) (uint32, bool) {
	const ext = ".log"
	if len(name) <= len(ext) || name[len(name)-len(ext):] != ext {
		return 0, false
	}
	digits := name[:len(name)-len(ext)]
	if digits[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(digits, 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(n), true
}
