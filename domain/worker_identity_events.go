package domain

import (
	"errors"
	"fmt"
	"time"
)

// Worker identity: how an agent proves it is the worker it claims to be.
// An agent enrols with a join token and gets an identity (a client
// certificate signed by the server's CA, plus a 15-minute identity token);
// the server renews it over the stream and refuses it once revoked. These
// events record those facts; certificates and tokens themselves are never
// events (only a certificate's serial, fingerprint and expiry are).

// ErrIdentityRevoked is returned by Enrol and RenewIdentity for a worker whose
// identity has been revoked: it may never connect again under its id.
var ErrIdentityRevoked = errors.New("worker identity revoked")

// CertRef names a client certificate without holding it. Empty when the
// agent asked for none (an older agent, or a server without a CA key).
type CertRef struct {
	Serial      string    `json:"serial,omitempty"`      // lowercase hex
	Fingerprint string    `json:"fingerprint,omitempty"` // SHA-256 of the DER, lowercase hex
	NotAfter    time.Time `json:"not_after,omitzero"`
}

// WorkerEnrolled: an agent was admitted and given its identity. TokenID is the
// join token it presented ("" when it proved itself with the certificate of
// Replaces, a worker that had left). Replaces is the worker id the agent had
// before, if any.
type WorkerEnrolled struct {
	WorkerID          string    `json:"worker_id"`
	TokenID           string    `json:"token_id,omitempty"`
	Replaces          string    `json:"replaces,omitempty"`
	Cert              CertRef   `json:"cert"`
	IdentityExpiresAt time.Time `json:"identity_expires_at,omitzero"`
	At                time.Time `json:"at"`
}

// WorkerIdentityRenewed: the server gave a connected worker a fresh identity
// token (and, in its last third, a fresh certificate for the same key).
type WorkerIdentityRenewed struct {
	WorkerID          string    `json:"worker_id"`
	Cert              CertRef   `json:"cert"`
	IdentityExpiresAt time.Time `json:"identity_expires_at"`
	At                time.Time `json:"at"`
}

// WorkerIdentityRevoked: the worker's identity is revoked for good (directly,
// or by revoking the join token that admitted it). Its stream is cut and its
// certificate and tokens are refused from then on.
type WorkerIdentityRevoked struct {
	WorkerID string    `json:"worker_id"`
	By       string    `json:"by"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// Wire names. Append-only: never rename or reuse one.
const (
	TypeWorkerEnrolled        = "worker.enrolled"
	TypeWorkerIdentityRenewed = "worker.identity_renewed"
	TypeWorkerIdentityRevoked = "worker.identity_revoked"
)

// EventType returns "worker.enrolled".
func (WorkerEnrolled) EventType() string { return TypeWorkerEnrolled }

// EventSchemaVersion implements Event.
func (WorkerEnrolled) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e WorkerEnrolled) StreamID() string { return WorkerStream(e.WorkerID) }

// EventType returns "worker.identity_renewed".
func (WorkerIdentityRenewed) EventType() string { return TypeWorkerIdentityRenewed }

// EventSchemaVersion implements Event.
func (WorkerIdentityRenewed) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e WorkerIdentityRenewed) StreamID() string { return WorkerStream(e.WorkerID) }

// EventType returns "worker.identity_revoked".
func (WorkerIdentityRevoked) EventType() string { return TypeWorkerIdentityRevoked }

// EventSchemaVersion implements Event.
func (WorkerIdentityRevoked) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e WorkerIdentityRevoked) StreamID() string { return WorkerStream(e.WorkerID) }

// Enrol records that a registered (or reconnected) worker was admitted and
// given an identity. Refused for a revoked worker.
type Enrol struct {
	TokenID           string    `json:"token_id"`
	Replaces          string    `json:"replaces"`
	Cert              CertRef   `json:"cert"`
	IdentityExpiresAt time.Time `json:"identity_expires_at"`
	At                time.Time `json:"at"`
}

// RenewIdentity records a renewed identity. Refused for a revoked worker.
type RenewIdentity struct {
	Cert              CertRef   `json:"cert"`
	IdentityExpiresAt time.Time `json:"identity_expires_at"`
	At                time.Time `json:"at"`
}

// RevokeIdentity revokes the worker's identity. A repeat decides nothing.
type RevokeIdentity struct {
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// CommandName implements WorkerCommand.
func (Enrol) CommandName() string { return "enrol" }

// CommandName implements WorkerCommand.
func (RenewIdentity) CommandName() string { return "renew-identity" }

// CommandName implements WorkerCommand.
func (RevokeIdentity) CommandName() string { return "revoke-identity" }

func (Enrol) workerCommand()          {}
func (RenewIdentity) workerCommand()  {}
func (RevokeIdentity) workerCommand() {}

// identityCommand is one of Enrol, RenewIdentity, RevokeIdentity: Decide and
// validateWorkerCommand hand them to the functions below.
type identityCommand interface {
	WorkerCommand
	identity()
}

func (Enrol) identity()          {}
func (RenewIdentity) identity()  {}
func (RevokeIdentity) identity() {}

// Revoked reports whether the worker's identity has been revoked.
func (w Worker) Revoked() bool { return !w.RevokedAt.IsZero() }

// decideIdentity decides an identity command on an existing worker that is
// not deregistered.
func (w Worker) decideIdentity(c identityCommand) ([]Event, error) {
	switch c := c.(type) {
	case Enrol:
		if w.Revoked() {
			return nil, fmt.Errorf("enrol worker %s: %w", w.ID, ErrIdentityRevoked)
		}
		return []Event{WorkerEnrolled{WorkerID: w.ID, TokenID: c.TokenID, Replaces: c.Replaces, Cert: c.Cert,
			IdentityExpiresAt: c.IdentityExpiresAt, At: c.At}}, nil
	case RenewIdentity:
		if w.Revoked() {
			return nil, fmt.Errorf("renew identity of worker %s: %w", w.ID, ErrIdentityRevoked)
		}
		return []Event{WorkerIdentityRenewed{WorkerID: w.ID, Cert: c.Cert, IdentityExpiresAt: c.IdentityExpiresAt, At: c.At}}, nil
	case RevokeIdentity:
		if w.Revoked() {
			return nil, nil
		}
		return []Event{WorkerIdentityRevoked{WorkerID: w.ID, By: c.By, Reason: c.Reason, At: c.At}}, nil
	}
	return nil, fmt.Errorf("decide worker %s: unknown command %T: %w", w.ID, c, ErrInvalidCommand)
}

// validateIdentity checks an identity command's fields and returns its time.
func validateIdentity(c identityCommand) (time.Time, error) {
	name := c.CommandName()
	text := func(field, s string, allowEmpty bool) error {
		if reason := checkText(s, maxTextBytes, allowEmpty); reason != "" {
			return commandError(name, field, "%s", reason)
		}
		return nil
	}
	cert := func(r CertRef) error {
		if len(r.Serial) > 64 || (r.Fingerprint != "" && !isLowerHex(r.Fingerprint, 64)) {
			return commandError(name, "cert", "serial longer than 64 characters or fingerprint not 64 lowercase hex")
		}
		return nil
	}
	switch c := c.(type) {
	case Enrol:
		err := firstErr(text("token_id", c.TokenID, true), cert(c.Cert))
		if err == nil && c.Replaces != "" {
			if reason := checkID(c.Replaces); reason != "" {
				err = commandError(name, "replaces", "%q: %s", c.Replaces, reason)
			}
		}
		return c.At, err
	case RenewIdentity:
		err := cert(c.Cert)
		if err == nil && c.IdentityExpiresAt.IsZero() {
			err = commandError(name, "identity_expires_at", "zero time")
		}
		return c.At, err
	case RevokeIdentity:
		return c.At, firstErr(text("by", c.By, false), text("reason", c.Reason, true))
	}
	return time.Time{}, fmt.Errorf("%s: unknown command type %T (pass command values): %w", name, c, ErrInvalidCommand)
}

// applyIdentity folds an identity event into w (Version already counted).
func (w Worker) applyIdentity(e Event) Worker {
	switch e := e.(type) {
	case WorkerEnrolled:
		w.Cert = e.Cert
	case WorkerIdentityRenewed:
		if e.Cert.Serial != "" {
			w.Cert = e.Cert
		}
	case WorkerIdentityRevoked:
		w.RevokedAt, w.RevokedReason = utc(e.At), e.Reason
	}
	return w
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
