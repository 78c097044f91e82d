package eventstore

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// maxPayloadDepth bounds the nesting of maps and arrays in a payload
// decoded into generic values.
const maxPayloadDepth = 64

// checkPayload walks one MessagePack value in b without allocating and
// fails when a declared length cannot fit the bytes that remain (each map
// entry needs at least two bytes, each array element one), when nesting is
// deeper than maxPayloadDepth, or when bytes trail the value. Decoding a
// payload into generic maps trusts declared lengths to size its
// allocations: a forged map32 header of four billion entries must be
// refused before that.
func checkPayload(b []byte) error {
	n, err := skipValue(b, 0)
	if err != nil {
		return err
	}
	if n != len(b) {
		return fmt.Errorf("%d trailing bytes after payload", len(b)-n)
	}
	return nil
}

var errShortPayload = errors.New("payload ends inside a value")

// skipValue returns the length of the value at the start of b.
func skipValue(b []byte, depth int) (int, error) {
	if len(b) == 0 {
		return 0, errShortPayload
	}
	if depth > maxPayloadDepth {
		return 0, fmt.Errorf("payload nests deeper than %d", maxPayloadDepth)
	}
	c := b[0]
	size := func(hdr, n int) (int, error) {
		if n < 0 || hdr+n > len(b) || hdr+n < hdr {
			return 0, errShortPayload
		}
		return hdr + n, nil
	}
	u := func(k int) (int, bool) {
		if len(b) < 1+k {
			return 0, false
		}
		switch k {
		case 1:
			return int(b[1]), true
		case 2:
			return int(binary.BigEndian.Uint16(b[1:])), true
		default:
			v := binary.BigEndian.Uint32(b[1:])
			if uint64(v) > uint64(len(b)) {
				return len(b) + 1, true // cannot fit: size() refuses it
			}
			return int(v), true
		}
	}
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return 1, nil
	case c >= 0xa0 && c <= 0xbf: // fixstr
		return size(1, int(c&0x1f))
	case c >= 0x90 && c <= 0x9f: // fixarray
		return skipSeq(b, 1, int(c&0x0f), 1, depth)
	case c >= 0x80 && c <= 0x8f: // fixmap
		return skipSeq(b, 1, int(c&0x0f), 2, depth)
	}
	switch c {
	case 0xcc, 0xd0:
		return size(1, 1)
	case 0xcd, 0xd1:
		return size(1, 2)
	case 0xce, 0xd2, 0xca:
		return size(1, 4)
	case 0xcf, 0xd3, 0xcb:
		return size(1, 8)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16
		return size(2, 1<<(c-0xd4))
	case 0xc4, 0xd9: // bin8, str8
		if n, ok := u(1); ok {
			return size(2, n)
		}
	case 0xc5, 0xda: // bin16, str16
		if n, ok := u(2); ok {
			return size(3, n)
		}
	case 0xc6, 0xdb: // bin32, str32
		if n, ok := u(4); ok {
			return size(5, n)
		}
	case 0xc7: // ext8
		if n, ok := u(1); ok {
			return size(3, n)
		}
	case 0xc8: // ext16
		if n, ok := u(2); ok {
			return size(4, n)
		}
	case 0xc9: // ext32
		if n, ok := u(4); ok {
			return size(6, n)
		}
	case 0xdc: // array16
		if n, ok := u(2); ok {
			return skipSeq(b, 3, n, 1, depth)
		}
	case 0xdd: // array32
		if n, ok := u(4); ok {
			return skipSeq(b, 5, n, 1, depth)
		}
	case 0xde: // map16
		if n, ok := u(2); ok {
			return skipSeq(b, 3, n, 2, depth)
		}
	case 0xdf: // map32
		if n, ok := u(4); ok {
			return skipSeq(b, 5, n, 2, depth)
		}
	default: // 0xc1: never used
		return 0, fmt.Errorf("payload holds the reserved byte %#x", c)
	}
	return 0, errShortPayload
}

// skipSeq skips n elements (per values each) after a header of hdr bytes.
func skipSeq(b []byte, hdr, n, per, depth int) (int, error) {
	if hdr > len(b) || n > (len(b)-hdr)/per {
		return 0, fmt.Errorf("payload declares %d elements in %d bytes", n, len(b)-min(hdr, len(b)))
	}
	off := hdr
	for range n * per {
		k, err := skipValue(b[off:], depth+1)
		if err != nil {
			return 0, err
		}
		off += k
	}
	return off, nil
}
