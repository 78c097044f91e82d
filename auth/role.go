package auth

import "fmt"

// Role is what an API token may do.
type Role string

// Roles, from least to most powerful.
const (
	Viewer   Role = "viewer"
	Operator Role = "operator"
	Admin    Role = "admin"
)

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case Viewer, Operator, Admin:
		return r, nil
	}
	return "", fmt.Errorf("parse role: %q is not viewer, operator or admin", s)
}

func (r Role) rank() int {
	switch r {
	case Viewer:
		return 1
	case Operator:
		return 2
	case Admin:
		return 3
	}
	return 0
}

// opRole is the least role each API operation needs. An operation missing
// here needs admin: new operations are closed until someone opens them.
var opRole = map[string]Role{
	"GetJob":        Viewer,
	"ListJobs":      Viewer,
	"ListJobEvents": Viewer,
	"WatchLog":      Viewer,
	"WatchEvents":   Viewer,
	"ListWorkers":   Viewer,
	"ListProviders": Viewer,
	"SubmitJobs":    Operator,
	"CancelJob":     Operator,
	"DrainWorker":   Operator,
	"SetSecret":     Admin,
	"ListSecrets":   Admin,
	"DeleteSecret":  Admin,
}

// Allowed reports whether role r may perform the API operation op.
func Allowed(r Role, op string) bool {
	need, ok := opRole[op]
	if !ok {
		need = Admin
	}
	return r.rank() > 0 && r.rank() >= need.rank()
}
