package scheduler

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseSelector(t *testing.T) {
	tests := []struct {
		in   string
		want Selector
	}{
		{"", nil},
		{"   ", nil},
		{"gpu=true", Selector{Eq("gpu", "true")}},
		{"gpu==true", Selector{Eq("gpu", "true")}},
		{"zone != eu-1", Selector{NotEq("zone", "eu-1")}},
		{"ssd", Selector{Exists("ssd")}},
		{"! spot", Selector{NotExists("spot")}},
		{"arch in (amd64, arm64)", Selector{In("arch", "amd64", "arm64")}},
		{"os notin (windows)", Selector{NotIn("os", "windows")}},
		{"hodei.dev/pool=a,ssd , !spot,arch in (x)", Selector{Eq("hodei.dev/pool", "a"), Exists("ssd"), NotExists("spot"), In("arch", "x")}},
		{"in", Selector{Exists("in")}},
		{"k=", Selector{Eq("k", "")}},
		{"ver=1.2:3", Selector{Eq("ver", "1.2:3")}},
	}
	for _, tt := range tests {
		got, err := ParseSelector(tt.in)
		if err != nil {
			t.Errorf("ParseSelector(%q) = %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseSelector(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestParseSelectorErrors(t *testing.T) {
	for _, in := range []string{"=x", "a=b,", "a b", "a in x", "a in (b", "a in (b c)", "a=b)", "!", ",a", "a=é", "a in ()x"} {
		_, err := ParseSelector(in)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseSelector(%q) = %v, want ErrInvalid", in, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "selector") {
			t.Errorf("ParseSelector(%q) error %q does not name the field", in, err)
		}
	}
}

func TestRequirementMatches(t *testing.T) {
	labels := map[string]string{"gpu": "true", "zone": "eu"}
	tests := []struct {
		r    Requirement
		want bool
	}{
		{Eq("gpu", "true"), true}, {Eq("gpu", "false"), false}, {Eq("x", ""), false},
		{NotEq("gpu", "true"), false}, {NotEq("gpu", "false"), true}, {NotEq("x", "y"), true},
		{Exists("zone"), true}, {Exists("x"), false},
		{NotExists("zone"), false}, {NotExists("x"), true},
		{In("zone", "us", "eu"), true}, {In("zone", "us"), false}, {In("x", "eu"), false},
		{NotIn("zone", "us"), true}, {NotIn("zone", "eu"), false}, {NotIn("x", "eu"), true},
	}
	for _, tt := range tests {
		if got := tt.r.Matches(labels); got != tt.want {
			t.Errorf("%s.Matches(%v) = %v, want %v", tt.r, labels, got, tt.want)
		}
	}
}

func TestCanonicalKey(t *testing.T) {
	a := Selector{In("arch", "b", "a"), Eq("gpu", "true")}
	b := Selector{Eq("gpu", "true"), In("arch", "a", "b", "a")}
	if a.canonicalKey() != b.canonicalKey() {
		t.Errorf("canonicalKey differs for equivalent selectors")
	}
	if a.canonicalKey() == (Selector{In("arch", "a", "b")}).canonicalKey() {
		t.Errorf("canonicalKey equal for different selectors")
	}
}

// FuzzParseSelector: the parser never panics, and what it accepts prints back
// to a string it parses to the same selector.
func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"gpu=true", "a!=b,c", "!x, y in (1,2)", "k notin (a)", "a==b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		sel, err := ParseSelector(in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseSelector(%q) = %v, not ErrInvalid", in, err)
			}
			return
		}
		again, err := ParseSelector(sel.String())
		if err != nil {
			t.Fatalf("ParseSelector(%q) (from %q) = %v", sel.String(), in, err)
		}
		if !reflect.DeepEqual(again, sel) {
			t.Fatalf("round trip of %q: %#v, want %#v", in, again, sel)
		}
	})
}
