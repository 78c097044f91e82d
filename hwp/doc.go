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
// Admission (Server.check): a client certificate the TLS handshake verified
// against the CA speaks only for the worker it names (a Hello claiming
// another agent_id, or none, is refused with PermissionDenied) and, with
// ServerConfig.Identities, admits it with no token; an agent naming a
// revoked worker is refused whatever it presents (revocation is the
// worker's state in the event log, plus ServerConfig.Revocations, the token
// store, whose revocations are recorded in the log when first seen). Then,
// with Identities, an identity token admits the worker it names and nobody
// else; otherwise the join token goes to ServerConfig.Joiner (or is compared
// with the static JoinToken). An agent admitted by join token is always
// enrolled as a new worker when identities are on.
//
// Identity (with Identities): Welcome carries an identity token and, with a
// ServerConfig.Certifier and a CSR in Hello (pki.ParseCSR: ECDSA P-256, the
// signature proves the key), a client certificate for the worker id. Every
// enrolment (worker.enrolled: join token id, certificate serial, fingerprint
// and expiry), renewal (worker.identity_renewed) and revocation
// (worker.identity_revoked) is a worker event (ServerConfig.IdentityLog). The
// session's guard, at every heartbeat tick, checks revocation, renews the
// identity token in its last 5 minutes (and the certificate, for the same
// key, in the last third of its life) with TokenRefresh, and cuts the stream
// (Unauthenticated) once the identity has expired or been revoked; a revoked
// worker is also drained, so no new job goes to it before it is marked lost. An agent may only report on, log to or finish attempts
// assigned to it: anything else is fenced (domain.ErrNotAssigned).
//
// Vocabulary: a JobRef (job id + attempt) names one attempt and is the fencing
// token; an offset is a byte position in one attempt's masked log.
package hwp
