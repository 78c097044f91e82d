// Package auth keeps Hodei's tokens and decides who may do what.
//
// Two kinds of token live in one file store, data/tokens.json (mode 0600,
// replaced atomically under an flock on data/tokens.lock, so `hodei token`
// and a running server can both change it):
//
//   - API tokens "hodeiapi1.<id>.<secret>" carry a role: viewer reads,
//     operator also submits, cancels and drains, admin also manages secrets.
//     Store.Authenticate implements api.Authenticator; anonymous calls are
//     rejected.
//   - Join tokens "hodei1.<id>.<secret>.<ca-fingerprint>" (package pki)
//     admit agents. They expire and allow a limited number of enrolments;
//     the worker ids they admitted are recorded on them. An agent whose
//     identity has lapsed may enrol again with the same token without
//     using it up (recorded as replacing its old worker id), until the
//     token is revoked.
//
// Worker identities (Identities) are HS256 JWTs (subject: the worker id,
// lifetime 15 minutes) that the server gives an agent in Welcome, renews
// over the stream in the last 5 minutes (TokenRefresh) and checks at every
// heartbeat tick: an expired identity, or one whose join token was revoked,
// cuts the stream. Only an identity resumes a worker id; a join token
// always enrols a new worker, so a copied join token can never report on
// another worker's jobs.
//
// Worker revocations (`hodei worker revoke`, RevokeWorker) are kept in the
// same file; the server cuts a revoked worker's stream within one heartbeat
// interval, records worker.identity_revoked in the event log, and refuses
// its certificate and tokens from then on.
//
// Only SHA-256 of a secret is stored. Creating, using and revoking a token
// is recorded on the token's entry (created_at, enrolled workers with their
// times, revoked_at): this store, not the domain event log, is the audit
// record of tokens, because tokens are server configuration that must be
// readable before the event store opens and must never enter the
// replicated, exported event history.
//
// Role rules are one table, Allowed, keyed by the API operation's RPC name.
package auth
