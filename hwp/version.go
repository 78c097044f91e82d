package hwp

import (
	"errors"
	"fmt"

	"github.com/hodei-jobs/hodei/hwp/hwppb"
)

// Version is a protocol version. Majors must match; minors interoperate.
type Version struct {
	Major, Minor uint32
}

// String returns "MAJOR.MINOR".
func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// ProtocolVersion is the version this build speaks (hwppb.ProtocolMajor and
// hwppb.ProtocolMinor, shared with the agent).
var ProtocolVersion = Version{Major: hwppb.ProtocolMajor, Minor: hwppb.ProtocolMinor}

// ErrIncompatibleVersion is matched (errors.Is) by *IncompatibleVersionError.
var ErrIncompatibleVersion = errors.New("incompatible protocol version")

// IncompatibleVersionError is returned by Negotiate when the majors differ.
type IncompatibleVersionError struct {
	Agent, Server Version
}

// Error says which side to upgrade.
func (e *IncompatibleVersionError) Error() string {
	side := "the agent"
	if e.Agent.Major > e.Server.Major {
		side = "the server"
	}
	return fmt.Sprintf("incompatible protocol version: agent speaks HWP %s, server speaks HWP %d.x: upgrade %s", e.Agent, e.Server.Major, side)
}

// Is reports whether target is ErrIncompatibleVersion.
func (e *IncompatibleVersionError) Is(target error) bool { return target == ErrIncompatibleVersion }

// Negotiate returns the version a session uses: the common major and the
// lower minor. It returns an *IncompatibleVersionError when the majors differ;
// the server answers it with Refused (code INCOMPATIBLE_VERSION, the error's
// message) and closes the stream.
func Negotiate(server, agent Version) (Version, error) {
	if server.Major != agent.Major {
		return Version{}, &IncompatibleVersionError{Agent: agent, Server: server}
	}
	return Version{Major: server.Major, Minor: min(server.Minor, agent.Minor)}, nil
}
