package domain

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on a JobSpec. A whole job.submitted event must fit in one event
// payload (1 MiB in the event store), so the script and env limits leave room
// for everything else.
const (
	MaxScriptBytes   = 512 << 10 // script body
	MaxEnvBytes      = 128 << 10 // sum of env keys and values
	MaxEnvVars       = 1024
	MaxSecrets       = 128
	MaxLabels        = 64 // per label map: labels, selector, worker labels
	MaxNameBytes     = 200
	MaxSlots         = 1024
	MaxCPUMillis     = 1 << 20 // ~1,000 cores
	MaxMemoryBytes   = 1 << 44 // 16 TiB
	MaxTimeout       = 7 * 24 * time.Hour
	MinPriority      = 1
	MaxPriority      = 100
	DefaultPriority  = 50
	MaxAttemptsLimit = 20
	// DefaultMaxAttempts is used when JobSpec.MaxAttempts is 0. Attempts are
	// spent only when an attempt ends without a result from the job (agent
	// lost, assignment failed); a job that exits non-zero fails at once.
	DefaultMaxAttempts = 3
	DefaultQueue       = "default"
	// ReservedEnvPrefix is set by the agent (HODEI_JOB_ID, HODEI_ATTEMPT, ...);
	// jobs may not define env vars or secrets under it.
	ReservedEnvPrefix = "HODEI_"
	maxIDBytes        = 128
	maxTextBytes      = 1024 // free-text fields: reasons, submitter, versions
)

// Resources is an amount of worker capacity: what a job asks for, what a
// worker declares, what the scheduler reserves. All fields are non-negative.
type Resources struct {
	Slots       int64 `json:"slots"`
	CPUMillis   int64 `json:"cpu_millis"`
	MemoryBytes int64 `json:"memory_bytes"`
}

// Fits reports whether r fits into free in every dimension. The scheduler
// uses this one function both to filter and to reserve.
func (r Resources) Fits(free Resources) bool {
	return r.Slots <= free.Slots && r.CPUMillis <= free.CPUMillis && r.MemoryBytes <= free.MemoryBytes
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	return Resources{r.Slots + o.Slots, r.CPUMillis + o.CPUMillis, r.MemoryBytes + o.MemoryBytes}
}

// Sub returns r - o.
func (r Resources) Sub(o Resources) Resources {
	return Resources{r.Slots - o.Slots, r.CPUMillis - o.CPUMillis, r.MemoryBytes - o.MemoryBytes}
}

// JobSpec is what a user submits: a shell script and what it needs to run.
// Zero values of Priority, MaxAttempts, Queue and Resources.Slots mean "use
// the default"; Submit records the spec with defaults filled in.
type JobSpec struct {
	Name   string            `json:"name"`
	Script string            `json:"script"`
	Env    map[string]string `json:"env"`
	// Secrets maps an env var name to the name of a secret in the secret
	// store. Only names are ever recorded; the agent receives the values.
	Secrets map[string]string `json:"secrets"`
	// Labels describe the job (for filtering and display).
	Labels map[string]string `json:"labels"`
	// Selector names worker labels the job requires: every key must be
	// present on the worker with an equal value.
	Selector  map[string]string `json:"selector"`
	Resources Resources         `json:"resources"`
	Priority  int               `json:"priority"` // MinPriority..MaxPriority; higher runs first
	// Timeout bounds one attempt's run time from its start; 0 means none.
	Timeout     time.Duration `json:"timeout"`
	MaxAttempts int           `json:"max_attempts"`
	// Queue is the tenant or queue the job is accounted to for fair share.
	Queue string `json:"queue"`
}

// WithDefaults returns s with defaults filled in for zero fields and its maps
// copied, so the result shares nothing with s.
func (s JobSpec) WithDefaults() JobSpec {
	if s.Priority == 0 {
		s.Priority = DefaultPriority
	}
	if s.MaxAttempts == 0 {
		s.MaxAttempts = DefaultMaxAttempts
	}
	if s.Queue == "" {
		s.Queue = DefaultQueue
	}
	if s.Resources.Slots == 0 {
		s.Resources.Slots = 1
	}
	s.Env = maps.Clone(s.Env)
	s.Secrets = maps.Clone(s.Secrets)
	s.Labels = maps.Clone(s.Labels)
	s.Selector = maps.Clone(s.Selector)
	return s
}

// Validate checks s as a user would submit it (zero values that have a
// default are accepted). It returns a *FieldError (ErrInvalidJobSpec) naming
// the first bad field,
// by its JSON name; fields are checked in a fixed order and map keys in sorted
// order, so the same spec always gives the same error.
func (s JobSpec) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...), Err: ErrInvalidJobSpec}
	}
	if reason := checkText(s.Name, MaxNameBytes, false); reason != "" {
		return bad("name", "%s", reason)
	}
	switch {
	case strings.TrimSpace(s.Script) == "":
		return bad("script", "empty")
	case len(s.Script) > MaxScriptBytes:
		return bad("script", "%d bytes, at most %d", len(s.Script), MaxScriptBytes)
	case strings.IndexByte(s.Script, 0) >= 0:
		return bad("script", "contains a NUL byte")
	case !utf8.ValidString(s.Script):
		return bad("script", "not valid UTF-8")
	}
	if len(s.Env) > MaxEnvVars {
		return bad("env", "%d variables, at most %d", len(s.Env), MaxEnvVars)
	}
	envBytes := 0
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		v := s.Env[k]
		if reason := checkEnvName(k); reason != "" {
			return bad("env", "key %q: %s", k, reason)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return bad("env["+k+"]", "value contains a NUL byte")
		}
		envBytes += len(k) + len(v)
	}
	if envBytes > MaxEnvBytes {
		return bad("env", "%d bytes of keys and values, at most %d", envBytes, MaxEnvBytes)
	}
	if len(s.Secrets) > MaxSecrets {
		return bad("secrets", "%d secrets, at most %d", len(s.Secrets), MaxSecrets)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Secrets)) {
		if reason := checkEnvName(k); reason != "" {
			return bad("secrets", "env name %q: %s", k, reason)
		}
		if _, dup := s.Env[k]; dup {
			return bad("secrets", "env name %q is also set in env", k)
		}
		if reason := checkSecretName(s.Secrets[k]); reason != "" {
			return bad("secrets["+k+"]", "secret name %q: %s", s.Secrets[k], reason)
		}
	}
	if field, reason := checkLabels("labels", s.Labels); reason != "" {
		return bad(field, "%s", reason)
	}
	if field, reason := checkLabels("selector", s.Selector); reason != "" {
		return bad(field, "%s", reason)
	}
	if field, reason := checkResources("resources", s.Resources, 0); reason != "" {
		return bad(field, "%s", reason)
	}
	if s.Priority != 0 && (s.Priority < MinPriority || s.Priority > MaxPriority) {
		return bad("priority", "%d is outside %d..%d", s.Priority, MinPriority, MaxPriority)
	}
	if s.Timeout < 0 || s.Timeout > MaxTimeout {
		return bad("timeout", "%s is outside 0..%s", s.Timeout, MaxTimeout)
	}
	if s.MaxAttempts < 0 || s.MaxAttempts > MaxAttemptsLimit {
		return bad("max_attempts", "%d is outside 1..%d (0 means %d)", s.MaxAttempts, MaxAttemptsLimit, DefaultMaxAttempts)
	}
	if s.Queue != "" {
		if reason := checkLabelValue(s.Queue); reason != "" {
			return bad("queue", "%q: %s", s.Queue, reason)
		}
	}
	return nil
}

// MatchSelector reports whether labels satisfy selector: every selector key
// is present in labels with an equal value. An empty selector matches all.
func MatchSelector(selector, labels map[string]string) bool {
	for k, want := range selector {
		if got, ok := labels[k]; !ok || got != want {
			return false
		}
	}
	return true
}

// ValidateID checks a job or worker id: 1 to 128 bytes of ASCII letters,
// digits, '.', '_' and '-', starting with a letter or digit. Ids become part
// of stream ids ("job-<id>"), so they are kept plain.
func ValidateID(id string) error {
	if reason := checkID(id); reason != "" {
		return fmt.Errorf("id %q: %s", id, reason)
	}
	return nil
}

func checkID(id string) string {
	if id == "" {
		return "empty"
	}
	if len(id) > maxIDBytes {
		return fmt.Sprintf("%d bytes, at most %d", len(id), maxIDBytes)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if isAlnum(c) || i > 0 && (c == '.' || c == '_' || c == '-') {
			continue
		}
		return fmt.Sprintf("byte %d (%q) is not allowed", i, c)
	}
	return ""
}

// checkResources returns the bad field and why, or "" when r is sane.
func checkResources(field string, r Resources, minSlots int64) (string, string) {
	switch {
	case r.Slots < minSlots || r.Slots > MaxSlots:
		return field + ".slots", fmt.Sprintf("%d is outside %d..%d", r.Slots, minSlots, MaxSlots)
	case r.CPUMillis < 0 || r.CPUMillis > MaxCPUMillis:
		return field + ".cpu_millis", fmt.Sprintf("%d is outside 0..%d", r.CPUMillis, MaxCPUMillis)
	case r.MemoryBytes < 0 || r.MemoryBytes > MaxMemoryBytes:
		return field + ".memory_bytes", fmt.Sprintf("%d is outside 0..%d", r.MemoryBytes, int64(MaxMemoryBytes))
	}
	return "", ""
}

// checkLabels returns the bad field and why, or "" when labels are valid.
func checkLabels(field string, labels map[string]string) (string, string) {
	if len(labels) > MaxLabels {
		return field, fmt.Sprintf("%d labels, at most %d", len(labels), MaxLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if reason := checkLabelKey(k); reason != "" {
			return field, fmt.Sprintf("key %q: %s", k, reason)
		}
		if v := labels[k]; v != "" {
			if reason := checkLabelValue(v); reason != "" {
				return field + "[" + k + "]", fmt.Sprintf("value %q: %s", v, reason)
			}
		}
	}
	return "", ""
}

// checkEnvName: POSIX portable names, [A-Za-z_][A-Za-z0-9_]*, at most 256
// bytes, not under ReservedEnvPrefix.
func checkEnvName(k string) string {
	if k == "" {
		return "empty"
	}
	if len(k) > 256 {
		return "longer than 256 bytes"
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c == '_' || isAlpha(c) || i > 0 && isDigit(c) {
			continue
		}
		return "must match [A-Za-z_][A-Za-z0-9_]*"
	}
	if strings.HasPrefix(strings.ToUpper(k), ReservedEnvPrefix) {
		return "the " + ReservedEnvPrefix + " prefix is reserved for the agent"
	}
	return ""
}

// checkSecretName: 1-253 bytes of letters, digits, '.', '_', '-', '/',
// starting and ending with a letter or digit ("prod/db-password").
func checkSecretName(n string) string {
	if n == "" {
		return "empty"
	}
	if len(n) > 253 {
		return "longer than 253 bytes"
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if isAlnum(c) || c == '.' || c == '_' || c == '-' || c == '/' {
			continue
		}
		return "must contain only letters, digits, '.', '_', '-' and '/'"
	}
	if !isAlnum(n[0]) || !isAlnum(n[len(n)-1]) {
		return "must start and end with a letter or digit"
	}
	return ""
}

// checkLabelKey: an optional DNS-style prefix and '/', then a name (as
// checkLabelValue, but not empty). Example: "hodei.dev/arch", "gpu".
func checkLabelKey(k string) string {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name, prefix = prefix, ""
	}
	if hasPrefix {
		if prefix == "" || len(prefix) > 253 {
			return "prefix must be 1-253 bytes"
		}
		for i := 0; i < len(prefix); i++ {
			c := prefix[i]
			if !(isDigit(c) || c >= 'a' && c <= 'z' || c == '-' || c == '.') {
				return "prefix must contain only lower-case letters, digits, '-' and '.'"
			}
		}
	}
	if name == "" {
		return "name is empty"
	}
	return checkLabelValue(name)
}

// checkLabelValue: 1-63 bytes of letters, digits, '-', '_', '.', starting and
// ending with a letter or digit.
func checkLabelValue(v string) string {
	if v == "" {
		return "empty"
	}
	if len(v) > 63 {
		return "longer than 63 bytes"
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if isAlnum(c) || c == '-' || c == '_' || c == '.' {
			continue
		}
		return "must contain only letters, digits, '-', '_' and '.'"
	}
	if !isAlnum(v[0]) || !isAlnum(v[len(v)-1]) {
		return "must start and end with a letter or digit"
	}
	return ""
}

// checkText: valid UTF-8 without control characters, at most max bytes;
// empty only if allowEmpty.
func checkText(s string, max int, allowEmpty bool) string {
	switch {
	case s == "" && !allowEmpty:
		return "empty"
	case len(s) > max:
		return fmt.Sprintf("%d bytes, at most %d", len(s), max)
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "contains a control character"
	}
	return ""
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }
