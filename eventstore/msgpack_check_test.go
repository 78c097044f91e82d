package eventstore

import (
	"strings"
	"testing"
	"time"
)

func TestCheckPayload(t *testing.T) {
	good, err := marshalPayload(map[string]any{"a": 1, "s": strings.Repeat("x", 300), "n": nil, "f": 1.5, "b": true,
		"arr": []any{1, "two", map[string]any{"k": []byte{1, 2, 3}}}, "t": time.Unix(1, 2).UTC(), "big": uint64(1) << 40, "neg": -70000})
	if err != nil {
		t.Fatal(err)
	}
	if err := checkPayload(good); err != nil {
		t.Fatalf("checkPayload(valid) = %v", err)
	}
	for i := range good {
		if err := checkPayload(good[:i]); err == nil {
			t.Errorf("checkPayload(first %d of %d bytes) = nil", i, len(good))
		}
	}
	for name, b := range map[string][]byte{
		"map32 of 4 billion":   {0xdf, 0xb0, 0x9d, 0x70, 0xd9, 0xa4},
		"array32 of 4 billion": {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01},
		"str32 past the end":   {0xdb, 0x00, 0x00, 0x10, 0x00, 'a'},
		"reserved byte":        {0xc1},
		"trailing":             {0x80, 0x80},
		"deep":                 append([]byte(strings.Repeat("\x91", 100)), 0x01),
	} {
		if err := checkPayload(b); err == nil {
			t.Errorf("%s: checkPayload = nil", name)
		}
	}
	if _, err := DecodeFields([]byte{0xdf, 0xb0, 0x9d, 0x70, 0xd9, 0xa4}); err == nil {
		t.Error("DecodeFields(forged map32) = nil error")
	}
}
