package docker

// ExitReason exposes exitReason to the external tests.
var ExitReason = exitReason

// State is the container state ExitReason words.
type State = containerState
