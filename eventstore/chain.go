package eventstore

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
)

var canonicalPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// ChainHash computes SHA-256(e.PrevHash || canonical bytes of e without its
// hash). The canonical bytes are the fixed storage layout of MarshalEnvelope
// up to and excluding the two hashes, so they do not depend on any encoder.
func ChainHash(e *Envelope) Hash {
	bp := canonicalPool.Get().(*[]byte)
	b := append((*bp)[:0], e.PrevHash[:]...)
	b = appendCanonical(b, e)
	h := Hash(sha256.Sum256(b))
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		canonicalPool.Put(bp)
	}
	return h
}

func appendCanonical(dst []byte, e *Envelope) []byte {
	dst = append(dst, envelopeFormat)
	dst = binary.BigEndian.AppendUint64(dst, e.Position)
	dst = appendString(dst, e.StreamID)
	dst = binary.BigEndian.AppendUint64(dst, e.StreamVersion)
	dst = appendString(dst, e.Type)
	dst = binary.BigEndian.AppendUint16(dst, e.SchemaVersion)
	dst = append(dst, e.EventID[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Time.UnixNano()))
	dst = appendString(dst, e.Actor)
	dst = append(dst, e.CorrelationID[:]...)
	dst = append(dst, e.CausationID[:]...)
	dst = binary.AppendUvarint(dst, uint64(len(e.Payload)))
	return append(dst, e.Payload...)
}

// VerifyLink checks that e follows prev in the chain: its position is the
// next one, its PrevHash is prev's hash and its own Hash is correct. It
// returns a *CorruptError naming e's position.
func VerifyLink(prevPos uint64, prevHash Hash, e *Envelope) error {
	switch {
	case e.Position != prevPos+1:
		return &CorruptError{Position: prevPos + 1, Reason: "missing: next stored event is at position " + itoa(e.Position)}
	case e.PrevHash != prevHash:
		return &CorruptError{Position: e.Position, Reason: "prev hash does not match the hash of position " + itoa(prevPos)}
	case ChainHash(e) != e.Hash:
		return &CorruptError{Position: e.Position, Reason: "hash does not match content"}
	}
	return nil
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
