package hwppb

// The protocol version this code speaks. Bump the major for a change an older
// peer cannot ignore (the server then refuses mismatched agents); bump the
// minor for additions an older peer can ignore.
const (
	// ProtocolMajor is the major protocol version.
	ProtocolMajor uint32 = 1
	// ProtocolMinor is the minor protocol version.
	ProtocolMinor uint32 = 0
)

// CurrentVersion returns a new Version message for ProtocolMajor.ProtocolMinor.
func CurrentVersion() *Version {
	return &Version{Major: ProtocolMajor, Minor: ProtocolMinor}
}
