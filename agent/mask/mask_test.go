package mask

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
)

// reference masks in with the obvious quadratic algorithm: mark every byte
// covered by any occurrence of any form, then replace each maximal run of
// marked bytes (overlapping or adjacent occurrences) with one Marker.
func reference(forms []string, in []byte) []byte {
	marked := make([]bool, len(in)+1)
	for _, f := range forms {
		for i := 0; i+len(f) <= len(in); i++ {
			if bytes.Equal(in[i:i+len(f)], []byte(f)) {
				for k := i; k < i+len(f); k++ {
					marked[k] = true
				}
			}
		}
	}
	var out []byte
	for i := 0; i < len(in); i++ {
		if !marked[i] {
			out = append(out, in[i])
			continue
		}
		out = append(out, Marker...)
		for i+1 < len(in) && marked[i+1] {
			i++
		}
	}
	return out
}

func allForms(secrets map[string]string) []string {
	var fs []string
	for _, v := range secrets {
		fs = append(fs, Forms(v)...)
	}
	return fs
}

// maskChunks masks in as the given sequence of writes.
func maskChunks(t testing.TB, m *Masker, chunks [][]byte) []byte {
	t.Helper()
	m.Reset()
	var out []byte
	for _, c := range chunks {
		out = m.Write(out, c)
	}
	return m.Flush(out)
}

func mustNew(t testing.TB, secrets map[string]string) *Masker {
	t.Helper()
	m, err := New(secrets)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	return m
}

func TestMaskEverySplitPoint(t *testing.T) {
	pem := "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf\n-----END KEY-----"
	cases := []struct {
		name    string
		secrets map[string]string
		text    string
	}{
		{"plain", map[string]string{"S": "hunter2-secret"}, "login with hunter2-secret now, hunter2-secre not, hunter2-secret!"},
		{"self-overlap", map[string]string{"S": "ababcab"}, "xxababababcabcababcabababcab--ababca"},
		{"ababc", map[string]string{"S": "aababc"}, "aaababababcaababcc aababc"},
		{"adjacent", map[string]string{"S": "secret"}, "secretsecret secret_secret"},
		{"prefix-of-other", map[string]string{"A": "abcdef", "B": "abcdefghij"}, "abcdefgh abcdefghij abcdefghijabcdef abcde"},
		{"multiline-pty", map[string]string{"K": pem}, "key:\r\n" + strings.ReplaceAll(pem, "\n", "\r\n") + "\r\ndone " + pem},
		{"base64", map[string]string{"S": "user:p4ssw0rd-xyz"}, "auth " + base64.StdEncoding.EncodeToString([]byte("user:p4ssw0rd-xyz")) + " and " +
			base64.StdEncoding.EncodeToString([]byte("a:user:p4ssw0rd-xyz")) + " and " + base64.StdEncoding.EncodeToString([]byte("ab:user:p4ssw0rd-xyz"))},
		{"url", map[string]string{"S": "p@ss w/rd&x=1"}, "GET /?pw=" + url.QueryEscape("p@ss w/rd&x=1") + " path " + url.PathEscape("p@ss w/rd&x=1")},
		{"all-same-byte", map[string]string{"S": "aaaaaa"}, strings.Repeat("a", 40) + "b" + strings.Repeat("a", 5)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.text)
			want := reference(allForms(tc.secrets), in)
			m := mustNew(t, tc.secrets)
			if got := maskChunks(t, m, [][]byte{in}); !bytes.Equal(got, want) {
				t.Fatalf("whole: Mask() = %q, want %q", got, want)
			}
			// One split at every position.
			for i := 0; i <= len(in); i++ {
				got := maskChunks(t, m, [][]byte{in[:i], in[i:]})
				if !bytes.Equal(got, want) {
					t.Fatalf("split at %d: Mask() = %q, want %q", i, got, want)
				}
			}
			// Two splits at every pair of positions.
			for i := 0; i <= len(in); i++ {
				for j := i; j <= len(in); j++ {
					got := maskChunks(t, m, [][]byte{in[:i], in[i:j], in[j:]})
					if !bytes.Equal(got, want) {
						t.Fatalf("split at %d,%d: Mask() = %q, want %q", i, j, got, want)
					}
				}
			}
			// Fixed chunk sizes, including byte at a time.
			for size := 1; size <= 9; size++ {
				var chunks [][]byte
				for i := 0; i < len(in); i += size {
					chunks = append(chunks, in[i:min(i+size, len(in))])
				}
				got := maskChunks(t, m, chunks)
				if !bytes.Equal(got, want) {
					t.Fatalf("chunks of %d: Mask() = %q, want %q", size, got, want)
				}
			}
		})
	}
}

// TestMaskNeverShipsSecret checks the shipped bytes (what Write returned so
// far, before Flush) never contain a secret, at every split point, and that the
// hold never exceeds the longest form minus one.
func TestMaskNeverShipsSecret(t *testing.T) {
	secret := "ababcXYZ"
	text := []byte("ab" + "ababab" + secret + "ababcXY" + secret + secret + "ababc")
	m := mustNew(t, map[string]string{"S": secret})
	for i := 0; i <= len(text); i++ {
		m.Reset()
		shipped := m.Write(nil, text[:i])
		if bytes.Contains(shipped, []byte(secret)) {
			t.Fatalf("split %d: first write shipped %q", i, shipped)
		}
		if m.Held() > m.maxLen-1 {
			t.Fatalf("split %d: Held() = %d, want <= %d", i, m.Held(), m.maxLen-1)
		}
		shipped = m.Write(shipped, text[i:])
		shipped = m.Flush(shipped)
		if bytes.Contains(shipped, []byte(secret)) || bytes.Contains(shipped, []byte("XYZ")) {
			t.Fatalf("split %d: shipped %q", i, shipped)
		}
	}
}

func TestMaskHoldsOnlyPartialMatch(t *testing.T) {
	m := mustNew(t, map[string]string{"S": "secret-value"})
	got := m.Write(nil, []byte("hello secr"))
	if string(got) != "hello " || m.Held() != 4 {
		t.Fatalf("Write() = %q held %d, want %q held 4", got, m.Held(), "hello ")
	}
	got = m.Write(nil, []byte("ecy"))
	if string(got) != "secrecy" || m.Held() != 0 {
		t.Fatalf("Write() = %q held %d, want %q held 0", got, m.Held(), "secrecy")
	}
	got = m.Write(nil, []byte("\r\n"))
	if string(got) != "\r\n" {
		t.Fatalf("Write() = %q, want CRLF at once", got)
	}
}

func TestShortSecretRejected(t *testing.T) {
	_, err := New(map[string]string{"GOOD": "long-enough", "API_KEY": "abc"})
	var se *ShortSecretError
	if !errors.As(err, &se) || !errors.Is(err, ErrShortSecret) {
		t.Fatalf("New() = %v, want *ShortSecretError", err)
	}
	if se.Name != "API_KEY" || se.Len != 3 || se.Min != MinSecretLen {
		t.Fatalf("ShortSecretError = %+v", se)
	}
	if strings.Contains(err.Error(), "abc") || !strings.Contains(err.Error(), "API_KEY") {
		t.Fatalf("Error() = %q: must name the secret, not show its value", err)
	}
	if _, err := New(map[string]string{"WS": "  ab \n"}); !errors.Is(err, ErrShortSecret) {
		t.Fatalf("New(whitespace-padded short) = %v, want ErrShortSecret", err)
	}
}

func TestFormsIncludeEncodings(t *testing.T) {
	v := "line1-abc\nline2-def"
	fs := Forms(v)
	want := []string{
		v,
		"line1-abc\r\nline2-def",
		base64.RawStdEncoding.EncodeToString([]byte(v[:18])),
		base64.RawStdEncoding.EncodeToString([]byte(v[1:19])),
		base64.RawStdEncoding.EncodeToString([]byte(v[2:17])),
		url.QueryEscape(v),
		`line1-abc\nline2-def`,
	}
	for _, w := range want {
		if !slices.Contains(fs, w) {
			t.Errorf("Forms() lacks %q; has %q", w, fs)
		}
	}
	for _, f := range fs {
		if len(f) < MinSecretLen {
			t.Errorf("Forms() has short form %q", f)
		}
	}
}

func TestNoSecretsPassesThrough(t *testing.T) {
	m := mustNew(t, nil)
	in := []byte("\x1b[31mred\x1b[0m")
	if got := m.Flush(m.Write(nil, in)); !bytes.Equal(got, in) {
		t.Fatalf("Mask() = %q, want %q", got, in)
	}
}

func FuzzMask(f *testing.F) {
	f.Add("ababc1", []byte("xxababababc1ababc1yy"), uint8(3), uint8(1))
	f.Add("secret\nline", []byte("a secret\r\nline b secret\nline"), uint8(5), uint8(2))
	f.Add("p@ss w0rd!", []byte("x="+url.QueryEscape("p@ss w0rd!")), uint8(1), uint8(7))
	f.Add("hunter2-pass", []byte(base64.StdEncoding.EncodeToString([]byte("u:hunter2-pass"))), uint8(4), uint8(4))
	f.Add("aaaaaaa", []byte(strings.Repeat("a", 30)), uint8(2), uint8(3))
	f.Fuzz(func(t *testing.T, secret string, in []byte, a, b uint8) {
		if len(in) > 4096 {
			return
		}
		m, err := New(map[string]string{"S": secret})
		if err != nil {
			if !errors.Is(err, ErrShortSecret) {
				t.Fatalf("New() = %v", err)
			}
			return
		}
		forms := Forms(secret)
		sort.Strings(forms)
		want := reference(forms, in)
		// Split into chunks of varying size driven by a and b.
		var chunks [][]byte
		sizes := []int{int(a%17) + 1, int(b%23) + 1, 1}
		for i, k := 0, 0; i < len(in); k++ {
			n := min(sizes[k%len(sizes)], len(in)-i)
			chunks = append(chunks, in[i:i+n])
			i += n
		}
		got := maskChunks(t, m, chunks)
		if !bytes.Equal(got, want) {
			t.Fatalf("Mask(%q) in %d chunks = %q, want %q", in, len(chunks), got, want)
		}
		// No form survives, unless the Marker's own bytes can spell it.
		if !strings.ContainsAny(secret, Marker) {
			for _, f := range forms {
				if !strings.ContainsAny(f, Marker) && bytes.Contains(got, []byte(f)) {
					t.Fatalf("Mask(%q) = %q still contains %q", in, got, f)
				}
			}
		}
	})
}

var benchSink []byte

func benchMask(b *testing.B, secrets map[string]string, chunk int) {
	m := mustNew(b, secrets)
	line := []byte("2026-08-22T10:00:00Z INFO building target //pkg/server:server with 8 workers, cache hit ratio 0.93\r\n")
	in := bytes.Repeat(line, chunk/len(line)+1)[:chunk]
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	out := make([]byte, 0, 2*chunk)
	for b.Loop() {
		out = m.Write(out[:0], in)
	}
	benchSink = out
}

// BenchmarkMask measures masking throughput over typical log lines in 4 KiB
// PTY-sized writes (no secret present: the common case).
func BenchmarkMask(b *testing.B) {
	b.Run("none", func(b *testing.B) { benchMask(b, nil, 4096) })
	b.Run("1secret", func(b *testing.B) { benchMask(b, map[string]string{"S": "s3cr3t-T0ken-value"}, 4096) })
	b.Run("10secrets", func(b *testing.B) {
		s := map[string]string{}
		for i := range 10 {
			s[string(rune('A'+i))] = strings.Repeat(string(rune('a'+i)), 4) + "-secret-value-0123456789"
		}
		benchMask(b, s, 4096)
	})
	b.Run("1secret-32k", func(b *testing.B) { benchMask(b, map[string]string{"S": "s3cr3t-T0ken-value"}, 32768) })
}

// A long secret (a PEM key, say) is masked whole, also split across
// chunks, and building its masker is cheap (the automaton holds only
// prefixes: FuzzMask/ee645561533641bd once took minutes in New).
func TestLongSecret(t *testing.T) {
	key := "-----BEGIN PRIVATE KEY-----\n" + strings.Repeat(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xa7, 0x1c, 0x3e}, 16))+"\n", 50) + "-----END PRIVATE KEY-----"
	m := mustNew(t, map[string]string{"KEY": key})
	pty := strings.ReplaceAll(key, "\n", "\r\n")
	in := []byte("before " + pty + " between " + url.QueryEscape(key) + " after")
	want := "before " + Marker + " between " + Marker + " after"
	for _, size := range []int{1, 7, 4096} {
		var chunks [][]byte
		for i := 0; i < len(in); i += size {
			chunks = append(chunks, in[i:min(i+size, len(in))])
		}
		if got := maskChunks(t, m, chunks); string(got) != want {
			t.Fatalf("Mask(long secret) in chunks of %d = %q, want %q", size, got, want)
		}
	}
}
