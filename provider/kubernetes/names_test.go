package kubernetes

import (
	"math"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The driver's own name checks agree with apimachinery's, which the API
// server applies.
func FuzzNameChecks(f *testing.F) {
	for _, s := range []string{"", "a", "hodei-agent-i1", "Upper", "under_score", "-a", "a-", "a.b", ".", "..", "..a",
		"HODEI_TOKEN", "x.y-z_0", strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("k", 254), "é", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := checkDNSLabel(s) == "", len(validation.IsDNS1123Label(s)) == 0; got != want {
			t.Errorf("checkDNSLabel(%q) valid = %v, want %v", s, got, want)
		}
		if got, want := checkSecretKey(s) == "", len(validation.IsConfigMapKey(s)) == 0; got != want {
			t.Errorf("checkSecretKey(%q) valid = %v, want %v", s, got, want)
		}
		if got, want := checkLabelValue(s) == "", len(validation.IsValidLabelValue(s)) == 0; got != want {
			t.Errorf("checkLabelValue(%q) valid = %v, want %v", s, got, want)
		}
	})
}

// Quantities are written as resource.Quantity would write them.
func TestQuantities(t *testing.T) {
	for _, m := range []int64{1, 10, 100, 999, 1000, 1500, 2000, 2500, 10000, 123456, 1000000, 1500000, math.MaxInt32} {
		if got, want := milliCPU(m), resource.NewMilliQuantity(m, resource.DecimalSI).String(); got != want {
			t.Errorf("milliCPU(%d) = %q, want %q", m, got, want)
		}
	}
	for _, b := range []int64{1, 500, 1000, 1023, 1024, 1536, 2048, 1000000, 512 << 20, 3 << 30, 1<<30 + 1, 5 << 40, 1 << 60,
		1e9, 1e12, math.MaxInt64} {
		if got, want := memoryBytes(b), resource.NewQuantity(b, resource.BinarySI).String(); got != want {
			t.Errorf("memoryBytes(%d) = %q, want %q", b, got, want)
		}
	}
}

// Selectors are written as apimachinery's labels package writes them.
func TestSelector(t *testing.T) {
	set := map[string]string{"hodei.owner": "server-1", "hodei.managed": "true"}
	if got, want := selector(set, "", nil), labels.SelectorFromSet(set).String(); got != want {
		t.Errorf("selector() = %q, want %q", got, want)
	}
	req, err := labels.NewRequirement("hodei.instance", selection.NotIn, []string{"b", "a"})
	if err != nil {
		t.Fatal(err)
	}
	want := labels.SelectorFromSet(set).Add(*req)
	got, err := labels.Parse(selector(set, "hodei.instance", []string{"b", "a"}))
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Errorf("selector(notin) = %q, want %q", got, want)
	}
}
