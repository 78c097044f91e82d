// Package pki is Hodei's small certificate authority and its join tokens.
//
// A fresh server calls LoadOrCreate on its data dir: the first start creates
// a CA (ECDSA P-256, valid 10 years) and a server certificate signed by it
// (ECDSA P-256, valid 1 year, SANs 127.0.0.1, ::1, localhost, the host name
// and any extra names); later starts load them and renew the server
// certificate when it is within 30 days of expiry or lacks a requested SAN.
// Every file is written atomically with mode 0600.
//
//	data/ca.pem          CA certificate (what clients trust)
//	data/ca-key.pem      CA private key (never leaves the server)
//	data/server.pem      server certificate chain (leaf, CA)
//	data/server-key.pem  server private key
//
// # Client certificates
//
// Bundle.IssueClient signs an agent's client certificate: ECDSA P-256 key
// from the agent's CSR (ParseCSR checks its signature and key type), common
// name and one URI SAN "hodei:worker:<id>" naming the worker, ExtKeyUsage
// client auth only, valid ClientLifetime (24h) and renewed over the stream.
// ServerTLS verifies client certificates when given (enrolling agents have
// none yet); WorkerID reads the worker id back from a verified one.
//
// # Join tokens
//
// A join token is "hodei1.<id>.<secret>.<ca-sha256-hex>": id names the
// token on the server (which keeps only SHA-256(secret)), and the last part
// is the SHA-256 of the CA certificate's DER. An agent given only the token
// calls agent.PinnedTLS (it lives with the agent, which may import nothing
// but the protocol): it completes the TLS handshake without a trust store and
// accepts the server only if the presented chain contains a CA certificate
// whose fingerprint equals the pinned one and the leaf verifies against that
// CA. The token is the trust anchor; it must be handled like a password.
//
// Invariants: no function panics on outside input; ParseJoinToken rejects
// anything but the exact format (fuzzed in pki_test.go), ParseCSR anything
// but a well-signed ECDSA P-256 request (fuzzed in client_test.go).
package pki
