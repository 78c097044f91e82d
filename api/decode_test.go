package api

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzRESTSubmit feeds arbitrary bodies to the REST submit decoder and the
// validation behind it: no panic, and every rejection is an *InputError
// naming a field; whatever is accepted is a valid spec.
func FuzzRESTSubmit(f *testing.F) {
	for _, s := range []string{
		`{"spec":{"name":"x","script":"y"}}`,
		`{"idempotency_key":"k","spec":{"name":"x","script":"y","env":{"A":"1"},"secrets":{"PW":"db/pw"},"labels":{"a":"b"},` +
			`"selector":{"os":"linux"},"resources":{"slots":1,"cpu_millis":500,"memory_bytes":1024},"priority":9,"timeout":"1m","max_attempts":2,"queue":"q"}}`,
		`{"jobs":[{"spec":{"name":"x","script":"y"}},{"spec":{"Name":"x","SCRIPT":"y"}}]}`,
		`{"spec":{"resources":{"cpu_millis":1e99}}}`,
		`{"spec":{"timeout":"-5s","name":"x","script":"y"}}`,
		`{"spec":{"env":{"":""}}}`, `[]`, `null`, `{}`, `{"spec":null}`, `{"spec":{"labels":{"a/b/c":"d"}}}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, batch bool) {
		req, err := parseSubmitBody(body, batch)
		if err == nil {
			var items []submitItem
			items, err = parseSubmit(req)
			if err == nil {
				for _, it := range items {
					if verr := it.spec.Validate(); verr != nil {
						t.Fatalf("accepted an invalid spec: %v", verr)
					}
				}
				return
			}
		}
		var in *InputError
		if !errors.As(err, &in) || in.Field == "" || in.Reason == "" {
			t.Fatalf("rejection %v (%T) does not name a field", err, err)
		}
	})
}

func TestUnknownFieldPath(t *testing.T) {
	tests := map[string]string{
		`{"spec":{"name":"x","resources":{"cpu":1}}}`:       "spec.resources.cpu",
		`{"jobs":[{"spec":{}},{"spec":{"nmae":"x"}}]}`:      "jobs[1].spec.nmae",
		`{"Spec":{"Name":"x","Bogus":1}}`:                   "Spec.Bogus",
		`{"spec":{"env":{"A":"1"}},"zzz":1,"aaa":2}`:        "aaa",
		`{"idempotency_key":"k","spec":{"labels":{"a":1}}}`: "",
	}
	for body, want := range tests {
		var dst any = &SubmitJob{}
		if strings.Contains(body, "jobs") {
			dst = &SubmitJobsRequest{}
		}
		if got := unknownField([]byte(body), reflect.TypeOf(dst)); got != want {
			t.Errorf("unknownField(%s) = %q, want %q", body, got, want)
		}
	}
}

func TestUTF8Splitter(t *testing.T) {
	in := []byte("aé€😀b\x1b[0m")
	for size := 1; size <= 5; size++ {
		u := &utf8Splitter{}
		var text strings.Builder
		var next uint64
		emit := func(c LogChunk) {
			if c.Offset != next {
				t.Fatalf("size %d: chunk at %d, want %d", size, c.Offset, next)
			}
			if !utf8.ValidString(c.Text) {
				t.Fatalf("size %d: chunk %q splits a character", size, c.Text)
			}
			next += uint64(len(c.Text))
			text.WriteString(c.Text)
		}
		for off := 0; off < len(in); off += size {
			end := min(off+size, len(in))
			for _, c := range u.add(logChunk{Attempt: 1, Offset: uint64(off), Data: in[off:end]}) {
				emit(c)
			}
		}
		if c, ok := u.flush(); ok {
			emit(c)
		}
		if text.String() != string(in) {
			t.Fatalf("size %d: %q, want %q", size, text.String(), in)
		}
	}
}
