// Package hwp is the server side of the Hodei Worker Protocol.
//
// The wire format lives in hwppb (hwp.proto plus committed generated code).
// This package stops generated types at the edge: converters turn each
// AgentMessage into a plain, validated Go value (AgentMessageFromProto) and
// each plain server message into its wire form (ServerMessageToProto), and
// version negotiation decides whether an agent may connect (Negotiate).
// Bad input from an agent gets an error naming the field (ErrInvalidMessage);
// nothing here panics on it.
//
// The stream handler that turns agent messages into domain commands lives in
// this package too (server.go); the agent's side of the contract is described
// in package agent's documentation.
//
// Vocabulary: a JobRef (job id + attempt) names one attempt and is the fencing
// token; an offset is a byte position in one attempt's masked log.
package hwp
