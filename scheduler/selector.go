package scheduler

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Op is the operator of a label requirement.
type Op uint8

// Label operators. Negative operators (NotEq, NotExists, NotIn) match workers
// that lack the key, as in Kubernetes label selectors.
const (
	OpEq        Op = iota + 1 // key=value
	OpNotEq                   // key!=value: the key is absent or has another value
	OpExists                  // key: the key is present with any value
	OpNotExists               // !key: the key is absent
	OpIn                      // key in (a,b): the key has one of the values
	OpNotIn                   // key notin (a,b): the key is absent or has none of them
)

// Limits on selectors and labels.
const (
	MaxRequirements = 64  // per selector, and per affinity list
	MaxLabels       = 256 // per worker
	maxLabelBytes   = 253 // key or value
)

// Requirement is one label condition. Eq and NotEq take exactly one value,
// Exists and NotExists none, In and NotIn at least one.
type Requirement struct {
	Key    string
	Op     Op
	Values []string
}

// Eq returns the requirement key=value.
func Eq(key, value string) Requirement { return Requirement{key, OpEq, []string{value}} }

// NotEq returns the requirement key!=value.
func NotEq(key, value string) Requirement { return Requirement{key, OpNotEq, []string{value}} }

// Exists returns the requirement that key is present.
func Exists(key string) Requirement { return Requirement{Key: key, Op: OpExists} }

// NotExists returns the requirement that key is absent.
func NotExists(key string) Requirement { return Requirement{Key: key, Op: OpNotExists} }

// In returns the requirement key in (values...).
func In(key string, values ...string) Requirement { return Requirement{key, OpIn, values} }

// NotIn returns the requirement key notin (values...).
func NotIn(key string, values ...string) Requirement { return Requirement{key, OpNotIn, values} }

// Matches reports whether labels satisfy r.
func (r Requirement) Matches(labels map[string]string) bool {
	v, ok := labels[r.Key]
	switch r.Op {
	case OpEq:
		return ok && len(r.Values) == 1 && v == r.Values[0]
	case OpNotEq:
		return !ok || len(r.Values) != 1 || v != r.Values[0]
	case OpExists:
		return ok
	case OpNotExists:
		return !ok
	case OpIn:
		return ok && slices.Contains(r.Values, v)
	case OpNotIn:
		return !ok || !slices.Contains(r.Values, v)
	}
	return false
}

// String renders r in the syntax ParseSelector reads.
func (r Requirement) String() string {
	switch r.Op {
	case OpEq:
		return r.Key + "=" + strings.Join(r.Values, "")
	case OpNotEq:
		return r.Key + "!=" + strings.Join(r.Values, "")
	case OpExists:
		return r.Key
	case OpNotExists:
		return "!" + r.Key
	case OpIn:
		return r.Key + " in (" + strings.Join(r.Values, ",") + ")"
	case OpNotIn:
		return r.Key + " notin (" + strings.Join(r.Values, ",") + ")"
	}
	return fmt.Sprintf("%s <op %d> %v", r.Key, r.Op, r.Values)
}

func (r Requirement) check() error {
	if reason := checkLabelKey(r.Key); reason != "" {
		return invalid("key", "%q: %s", r.Key, reason)
	}
	want := ""
	switch r.Op {
	case OpEq, OpNotEq:
		if len(r.Values) != 1 {
			want = "exactly one value"
		}
	case OpExists, OpNotExists:
		if len(r.Values) != 0 {
			want = "no values"
		}
	case OpIn, OpNotIn:
		if len(r.Values) == 0 || len(r.Values) > MaxRequirements {
			want = fmt.Sprintf("1..%d values", MaxRequirements)
		}
	default:
		return invalid("op", "unknown operator %d", r.Op)
	}
	if want != "" {
		return invalid("values", "%d values, operator %s takes %s", len(r.Values), r.opName(), want)
	}
	for i, v := range r.Values {
		if reason := checkLabelValue(v); reason != "" {
			return invalid(fmt.Sprintf("values[%d]", i), "%q: %s", v, reason)
		}
	}
	return nil
}

func (r Requirement) opName() string {
	return [...]string{"?", "=", "!=", "exists", "!exists", "in", "notin"}[min(int(r.Op), 6)]
}

// Selector is a conjunction of label requirements; the empty selector
// matches every worker.
type Selector []Requirement

// SelectorFromMap turns an equality map (domain.JobSpec.Selector) into a
// Selector, in key order.
func SelectorFromMap(m map[string]string) Selector {
	if len(m) == 0 {
		return nil
	}
	s := make(Selector, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		s = append(s, Eq(k, m[k]))
	}
	return s
}

// Matches reports whether labels satisfy every requirement of s. It is the
// brute-force definition the label index must agree with.
func (s Selector) Matches(labels map[string]string) bool {
	for _, r := range s {
		if !r.Matches(labels) {
			return false
		}
	}
	return true
}

// String renders s in the syntax ParseSelector reads.
func (s Selector) String() string {
	parts := make([]string, len(s))
	for i, r := range s {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

func (s Selector) check(field string) error {
	if len(s) > MaxRequirements {
		return invalid(field, "%d requirements, at most %d", len(s), MaxRequirements)
	}
	for i, r := range s {
		if err := r.check(); err != nil {
			return prefixField(fmt.Sprintf("%s[%d].", field, i), err)
		}
	}
	return nil
}

// canonicalKey is a string equal for selectors that match the same workers
// by construction (same requirements in any order, In values in any order or
// repeated). The label charset excludes the separator bytes, so valid
// selectors that differ never collide.
func (s Selector) canonicalKey() string {
	var b keyBuilder
	return string(b.key(s))
}

// keyBuilder builds canonical selector keys; once its buffers have grown it
// allocates nothing, so the scheduler can look a job's selector up in its
// intern table for free (a map index with string(bytes) does not copy).
type keyBuilder struct {
	seg   []byte   // the requirements, each encoded, back to back
	spans [][2]int // each requirement's bytes in seg
	order []int    // spans sorted by content
	vals  []string
	out   []byte
}

func (b *keyBuilder) key(sel Selector) []byte {
	b.seg, b.spans, b.out, b.order = b.seg[:0], b.spans[:0], b.out[:0], b.order[:0]
	for _, r := range sel {
		start := len(b.seg)
		b.seg = append(b.seg, r.Key...)
		b.seg = append(b.seg, 0, byte('0'+r.Op), 0)
		b.vals = append(b.vals[:0], r.Values...)
		slices.Sort(b.vals)
		b.vals = slices.Compact(b.vals)
		for i, v := range b.vals {
			if i > 0 {
				b.seg = append(b.seg, 1)
			}
			b.seg = append(b.seg, v...)
		}
		b.spans = append(b.spans, [2]int{start, len(b.seg)})
		b.order = append(b.order, len(b.order))
	}
	seg := func(i int) []byte { return b.seg[b.spans[i][0]:b.spans[i][1]] }
	slices.SortFunc(b.order, func(x, y int) int { return bytes.Compare(seg(x), seg(y)) })
	for n, i := range b.order {
		if n > 0 {
			if bytes.Equal(seg(b.order[n-1]), seg(i)) {
				continue
			}
			b.out = append(b.out, 2)
		}
		b.out = append(b.out, seg(i)...)
	}
	return b.out
}

// canonical returns a copy of s in canonical order: requirements sorted by
// key, operator and values, values sorted and without repeats, repeated
// requirements dropped.
func (s Selector) canonical() Selector {
	if len(s) == 0 {
		return nil
	}
	out := make(Selector, 0, len(s))
	for _, r := range s {
		vals := slices.Compact(slices.Sorted(slices.Values(r.Values)))
		out = append(out, Requirement{r.Key, r.Op, vals})
	}
	slices.SortFunc(out, func(a, b Requirement) int {
		return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Op, b.Op), slices.Compare(a.Values, b.Values))
	})
	return slices.CompactFunc(out, func(a, b Requirement) bool {
		return a.Key == b.Key && a.Op == b.Op && slices.Equal(a.Values, b.Values)
	})
}

// Preference is a soft label condition: workers that match it gain Weight
// (or lose it, when negative) in the affinity part of their score.
type Preference struct {
	Requirement
	Weight int // -100..100, not 0
}

func checkPreferences(ps []Preference) error {
	if len(ps) > MaxRequirements {
		return invalid("affinity", "%d preferences, at most %d", len(ps), MaxRequirements)
	}
	for i, p := range ps {
		if err := p.Requirement.check(); err != nil {
			return prefixField(fmt.Sprintf("affinity[%d].", i), err)
		}
		if p.Weight == 0 || p.Weight < -100 || p.Weight > 100 {
			return invalid(fmt.Sprintf("affinity[%d].weight", i), "%d is outside -100..100 or zero", p.Weight)
		}
	}
	return nil
}

// checkLabels validates a worker's label map.
func checkLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return invalid("labels", "%d labels, at most %d", len(labels), MaxLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if reason := checkLabelKey(k); reason != "" {
			return invalid("labels", "key %q: %s", k, reason)
		}
		if reason := checkLabelValue(labels[k]); reason != "" {
			return invalid("labels["+k+"]", "value %q: %s", labels[k], reason)
		}
	}
	return nil
}

// Label keys are 1-253 bytes of letters, digits and "-_./"; values 0-253
// bytes of letters, digits and "-_./:". This is a superset of the domain's
// rules, and excludes every byte the selector syntax and canonicalKey use.
func checkLabelKey(k string) string {
	if k == "" {
		return "empty"
	}
	return checkLabelBytes(k, false)
}

func checkLabelValue(v string) string { return checkLabelBytes(v, true) }

func checkLabelBytes(s string, value bool) string {
	if len(s) > maxLabelBytes {
		return fmt.Sprintf("%d bytes, at most %d", len(s), maxLabelBytes)
	}
	for i := 0; i < len(s); i++ {
		if !isLabelByte(s[i], value) {
			if value {
				return fmt.Sprintf("byte %d (%q): only letters, digits and \"-_./:\" are allowed", i, s[i])
			}
			return fmt.Sprintf("byte %d (%q): only letters, digits and \"-_./\" are allowed", i, s[i])
		}
	}
	return ""
}

func isLabelByte(c byte, value bool) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '/' || value && c == ':'
}

// ParseSelector reads a comma-separated list of requirements:
//
//	gpu=true, zone!=eu-1, ssd, !spot, arch in (amd64,arm64), os notin (windows)
//
// "==" is accepted for "=". The empty string (or only spaces) is the empty
// selector. Errors are *InvalidError with the byte offset of the problem.
func ParseSelector(s string) (Selector, error) {
	p := selParser{s: s}
	var sel Selector
	p.space()
	if p.i == len(s) {
		return nil, nil
	}
	for {
		r, err := p.requirement()
		if err != nil {
			return nil, err
		}
		sel = append(sel, r)
		if len(sel) > MaxRequirements {
			return nil, invalid("selector", "more than %d requirements", MaxRequirements)
		}
		p.space()
		if p.i == len(s) {
			break
		}
		if s[p.i] != ',' {
			return nil, p.fail("expected ',' or end")
		}
		p.i++
		p.space()
	}
	if err := sel.check("selector"); err != nil {
		return nil, err
	}
	return sel, nil
}

type selParser struct {
	s string
	i int
}

func (p *selParser) fail(what string) error {
	near := p.s[p.i:]
	if len(near) > 16 {
		near = near[:16] + "..."
	}
	if near == "" {
		return invalid("selector", "at byte %d: %s, got end of input", p.i, what)
	}
	return invalid("selector", "at byte %d: %s, got %q", p.i, what, near)
}

func (p *selParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *selParser) word(value bool) string {
	start := p.i
	for p.i < len(p.s) && isLabelByte(p.s[p.i], value) {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *selParser) requirement() (Requirement, error) {
	if p.i < len(p.s) && p.s[p.i] == '!' {
		p.i++
		p.space()
		k := p.word(false)
		if k == "" {
			return Requirement{}, p.fail("expected a label key after '!'")
		}
		return NotExists(k), nil
	}
	k := p.word(false)
	if k == "" {
		return Requirement{}, p.fail("expected a label key")
	}
	p.space()
	rest := p.s[p.i:]
	switch {
	case strings.HasPrefix(rest, "!="):
		p.i += 2
		p.space()
		return NotEq(k, p.word(true)), nil
	case strings.HasPrefix(rest, "=="):
		p.i += 2
		p.space()
		return Eq(k, p.word(true)), nil
	case strings.HasPrefix(rest, "="):
		p.i++
		p.space()
		return Eq(k, p.word(true)), nil
	case strings.HasPrefix(rest, "notin") && p.i > 0 && p.s[p.i-1] == ' ':
		p.i += len("notin")
		vals, err := p.list()
		return Requirement{k, OpNotIn, vals}, err
	case strings.HasPrefix(rest, "in") && p.i > 0 && p.s[p.i-1] == ' ':
		p.i += len("in")
		vals, err := p.list()
		return Requirement{k, OpIn, vals}, err
	}
	return Exists(k), nil
}

func (p *selParser) list() ([]string, error) {
	p.space()
	if p.i == len(p.s) || p.s[p.i] != '(' {
		return nil, p.fail("expected '('")
	}
	p.i++
	var vals []string
	for {
		p.space()
		vals = append(vals, p.word(true))
		p.space()
		if p.i == len(p.s) {
			return nil, p.fail("expected ',' or ')'")
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case ')':
			p.i++
			return vals, nil
		default:
			return nil, p.fail("expected ',' or ')'")
		}
		if len(vals) > MaxRequirements {
			return nil, invalid("selector", "more than %d values in a list", MaxRequirements)
		}
	}
}
