package mask

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/cloudflare/ahocorasick"
)

// MinSecretLen is the shortest secret value accepted, in bytes. Shorter values
// match too much ordinary output to be masked usefully, and masking them would
// reveal them by their holes.
const MinSecretLen = 6

// Marker replaces each run of masked bytes.
const Marker = "[MASKED]"

// prefixLen bounds the automaton's patterns: it holds each needle's first
// prefixLen bytes and finds candidates, which process confirms with
// bytes.Index. Building it takes time and memory that grow much faster than
// the patterns' length (about 2 minutes and 200 MB for the 49 KB of forms of
// a 2.5 KB secret), so whole needles would let one long secret, a PEM key
// say, stall the agent.
const prefixLen = 32

// ErrShortSecret is matched (errors.Is) by a *ShortSecretError.
var ErrShortSecret = errors.New("secret shorter than the minimum")

// ShortSecretError is returned by New when a secret value is shorter than
// MinSecretLen. It names the secret, never its value.
type ShortSecretError struct {
	Name string // the secret's name (its environment variable)
	Len  int    // its length in bytes
	Min  int    // MinSecretLen
}

// Error implements error.
func (e *ShortSecretError) Error() string {
	return fmt.Sprintf("mask secret %q: %d bytes, shorter than the minimum of %d", e.Name, e.Len, e.Min)
}

// Is reports whether target is ErrShortSecret.
func (e *ShortSecretError) Is(target error) bool { return target == ErrShortSecret }

// Masker masks one output stream. Build it with New; the zero value masks
// nothing.
type Masker struct {
	matcher  *ahocorasick.Matcher
	byPrefix [][]int   // matcher's dictionary index -> the needles starting with that prefix
	needles  [][]byte  // every registered form, sorted, unique
	first    [256]bool // first bytes of needles
	maxLen   int

	buf     []byte // held bytes (front) + the write being processed
	base    int64  // stream offset of buf[0]
	maskEnd int64  // stream offset where the last emitted masked run ends; -1 none
	ranges  []span // scratch
}

type span struct{ s, e int }

// New returns a Masker for the secret values, keyed by name. It returns a
// *ShortSecretError (the first by name) when a value is shorter than
// MinSecretLen.
func New(secrets map[string]string) (*Masker, error) {
	names := make([]string, 0, len(secrets))
	for name := range secrets {
		names = append(names, name)
	}
	sort.Strings(names)
	set := map[string]bool{}
	for _, name := range names {
		v := secrets[name]
		if len(v) < MinSecretLen || len(strings.TrimSpace(v)) < MinSecretLen {
			return nil, &ShortSecretError{Name: name, Len: len(strings.TrimSpace(v)), Min: MinSecretLen}
		}
		for _, f := range Forms(v) {
			set[f] = true
		}
	}
	return newFromForms(set), nil
}

func newFromForms(set map[string]bool) *Masker {
	m := &Masker{maskEnd: -1}
	if len(set) == 0 {
		return m
	}
	forms := make([]string, 0, len(set))
	for f := range set {
		forms = append(forms, f)
	}
	sort.Strings(forms)
	m.needles = make([][]byte, len(forms))
	prefixes := map[string]int{}
	var dict [][]byte
	for i, f := range forms {
		m.needles[i] = []byte(f)
		m.first[f[0]] = true
		m.maxLen = max(m.maxLen, len(f))
		p := f[:min(len(f), prefixLen)]
		k, ok := prefixes[p]
		if !ok {
			k = len(dict)
			prefixes[p] = k
			dict = append(dict, []byte(p))
			m.byPrefix = append(m.byPrefix, nil)
		}
		m.byPrefix[k] = append(m.byPrefix[k], i)
	}
	m.matcher = ahocorasick.NewMatcher(dict)
	return m
}

// Forms returns the byte strings registered for one secret value: the value,
// its trimmed form, PTY ("\r\n") forms of multi-line values, base64 (both
// alphabets, three alignments, whole groups only), URL-encoded and
// JSON-escaped forms. Forms shorter than MinSecretLen are left out.
func Forms(v string) []string {
	var out []string
	add := func(f string) {
		if len(f) >= MinSecretLen && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	t := strings.TrimSpace(v)
	for _, x := range []string{v, t} {
		add(x)
		if strings.Contains(x, "\n") {
			// The PTY's ONLCR turns every "\n" into "\r\n".
			add(strings.ReplaceAll(x, "\n", "\r\n"))
		}
	}
	// base64: a secret embedded at any offset is encoded in one of three
	// alignments; only whole 3-byte groups encode to stable characters.
	for k := 0; k < 3 && k < len(t); k++ {
		u := t[k:]
		u = u[:len(u)/3*3]
		add(base64.RawStdEncoding.EncodeToString([]byte(u)))
		add(base64.RawURLEncoding.EncodeToString([]byte(u)))
	}
	q, p := url.QueryEscape(t), url.PathEscape(t)
	for _, x := range []string{q, p} {
		add(x)
		add(lowerHexEscapes(x))
	}
	if j, err := json.Marshal(t); err == nil {
		add(string(j[1 : len(j)-1]))
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(t) == nil {
		j := bytes.TrimSpace(b.Bytes())
		add(string(j[1 : len(j)-1]))
	}
	return out
}

// lowerHexEscapes lower-cases the hex digits of %XX escapes.
func lowerHexEscapes(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1] = lowerHex(b[i+1])
			b[i+2] = lowerHex(b[i+2])
			i += 2
		}
	}
	return string(b)
}

func lowerHex(c byte) byte {
	if c >= 'A' && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}

// Write masks p and appends the bytes that are now safe to ship to dst,
// returning the extended slice. Bytes that could still turn out to be the
// start of a secret are held back until the next Write or Flush.
func (m *Masker) Write(dst, p []byte) []byte {
	if m.matcher == nil {
		return append(dst, p...)
	}
	m.buf = append(m.buf, p...)
	return m.process(dst, false)
}

// Flush appends the held bytes to dst (masked where they complete a secret,
// plain where they were only a possible start) and resets the hold. Call it
// at end of stream.
func (m *Masker) Flush(dst []byte) []byte {
	if m.matcher == nil {
		return dst
	}
	return m.process(dst, true)
}

// Reset forgets the stream state (held bytes, open runs) and keeps the
// secrets, so one Masker can mask another stream.
func (m *Masker) Reset() {
	m.buf = m.buf[:0]
	m.base = 0
	m.maskEnd = -1
}

// Held returns the number of bytes held back.
func (m *Masker) Held() int { return len(m.buf) }

func (m *Masker) process(dst []byte, final bool) []byte {
	buf := m.buf
	n := len(buf)
	rs := m.ranges[:0]
	if m.maskEnd > m.base {
		// Held bytes that belong to a run whose Marker is already out.
		rs = append(rs, span{0, int(m.maskEnd - m.base)})
	}
	for _, h := range m.matcher.Match(buf) {
		if h < 0 || h >= len(m.byPrefix) {
			continue
		}
		for _, k := range m.byPrefix[h] {
			needle := m.needles[k]
			for i := 0; i+len(needle) <= n; {
				j := bytes.Index(buf[i:], needle)
				if j < 0 {
					break
				}
				s := i + j
				rs = append(rs, span{s, s + len(needle)})
				i = s + 1
			}
		}
	}
	if len(rs) > 1 {
		slices.SortFunc(rs, func(a, b span) int { return a.s - b.s })
		w := 0
		for _, r := range rs[1:] {
			if r.s <= rs[w].e {
				rs[w].e = max(rs[w].e, r.e)
				continue
			}
			w++
			rs[w] = r
		}
		rs = rs[:w+1]
	}
	m.ranges = rs

	hold := n
	if !final {
		hold = n - m.heldSuffix(buf)
	}
	pos := 0
	for _, r := range rs {
		if r.s >= hold {
			break // wholly held: found again next time
		}
		dst = append(dst, buf[pos:r.s]...)
		if m.base+int64(r.s) > m.maskEnd {
			dst = append(dst, Marker...)
		}
		m.maskEnd = max(m.maskEnd, m.base+int64(r.e))
		pos = r.e
		if pos >= hold {
			break // the run goes on into the held bytes
		}
	}
	if pos < hold {
		dst = append(dst, buf[pos:hold]...)
	}
	held := copy(buf, buf[hold:])
	m.buf = buf[:held]
	m.base += int64(hold)
	return dst
}

// heldSuffix returns the length of the longest suffix of buf that is a proper
// prefix of some needle.
func (m *Masker) heldSuffix(buf []byte) int {
	n := len(buf)
	for i := max(0, n-(m.maxLen-1)); i < n; i++ {
		if m.first[buf[i]] && m.isProperPrefix(buf[i:]) {
			return n - i
		}
	}
	return 0
}

func (m *Masker) isProperPrefix(s []byte) bool {
	i := sort.Search(len(m.needles), func(k int) bool { return bytes.Compare(m.needles[k], s) >= 0 })
	if i < len(m.needles) && bytes.Equal(m.needles[i], s) {
		i++
	}
	return i < len(m.needles) && bytes.HasPrefix(m.needles[i], s)
}
