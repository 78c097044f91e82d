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
// Admission (Server.check): with ServerConfig.Identities, an identity token
// admits the worker it names and nobody else; otherwise the join token goes
// to ServerConfig.Joiner (or is compared with the static JoinToken). An agent
// admitted by join token is always enrolled as a new worker when identities
// are on. The session's guard renews the identity over the stream and cuts
// the stream (Unauthenticated) at the first heartbeat tick after it expired
// or was revoked. An agent may only report on, log to or finish attempts
// assigned to it: anything else is fenced (domain.ErrNotAssigned).
//
// Vocabulary: a JobRef (job id + attempt) names one attempt and is the fencing
// token; an offset is a byte position in one attempt's masked log.
package hwp
