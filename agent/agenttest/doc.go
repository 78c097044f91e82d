// Package agenttest provides a fake Hodei Worker Protocol server for agent
// tests and benchmarks: a real gRPC server on loopback that welcomes agents,
// stores logs by byte offset (dropping resent bytes, recording gaps), acks
// them, records every message, and lets a test send Assign, Cancel, Fence and
// Drain. Tests wait on its state with WaitFor, never with sleeps.
//
// Stop drops every connection; Start("") listens again on the same address
// with the state kept, which is how reconnect tests restart "the server".
//
// It imports only the generated protocol (hwppb), like the agent.
package agenttest
