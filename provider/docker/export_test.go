package docker

// ExitReason exposes exitReason to the external tests.
var ExitReason = exitReason
