// Package provider starts and stops agents on demand. A Driver knows one
// platform (Docker containers, Kubernetes Pods); the Manager decides when
// to use it: it watches the queue, starts instances when queued jobs match
// a provider's labels and no connected agent can take them (never above
// the provider's maximum), drains idle agents after the idle timeout,
// removes what exited, and records every decision as an instance event
// (instance.requested, .started, .connected, .failed, .terminated) so
// `hodei replay timeline instance-<id>` explains why an instance existed.
package provider

import (
	"context"
	"errors"
	"time"
)

// Platform labels every driver puts on what it creates, so instances can
// be found (and swept after a crash) by label alone.
const (
	// LabelManaged is "true" on every container, Pod or Secret Hodei starts.
	LabelManaged = "hodei.managed"
	// LabelOwner names the server (its owner id) that started it; a server
	// sweeps only its own.
	LabelOwner = "hodei.owner"
	// LabelInstance is the instance id.
	LabelInstance = "hodei.instance"
	// LabelProvider is the provider's configured name.
	LabelProvider = "hodei.provider"
)

// AgentLabelInstance is the agent label that ties a connected worker to
// its instance (the agent declares it in Hello).
const AgentLabelInstance = "hodei.instance"

// Phase is what a driver observed of an instance.
type Phase string

// Phases.
const (
	// PhasePending: created, not running yet (image pulling, Pod not bound).
	PhasePending Phase = "pending"
	// PhaseRunning: the agent process runs.
	PhaseRunning Phase = "running"
	// PhaseExited: the agent process ended (the instance may still need
	// removing).
	PhaseExited Phase = "exited"
)

// StartRequest is one agent instance to start.
type StartRequest struct {
	// InstanceID is unique per instance ([a-z0-9-], at most 40 bytes, so
	// it fits container and Pod names): drivers name what they create
	// after it, e.g. "hodei-agent-<id>".
	InstanceID string
	// Provider is the provider's configured name (LabelProvider).
	Provider string
	// Owner is the server's owner id (LabelOwner).
	Owner string
	// Image is the agent image to run (its entrypoint is hodei-agent).
	Image string
	// Env is the agent's environment (HODEI_SERVER, HODEI_LABELS,
	// HODEI_SLOTS, HODEI_EPHEMERAL, ...), not secret.
	Env map[string]string
	// SecretEnv holds credentials (HODEI_TOKEN: a one-time join token).
	// Drivers keep them out of what is easy to read: Kubernetes puts them
	// in a Secret the Pod references; Docker passes them as environment.
	SecretEnv map[string]string
	// CPUMillis and MemoryBytes are the resources the agent offers; drivers
	// set them as the container's limits (and the Pod's requests). Zero
	// means unlimited.
	CPUMillis   uint64
	MemoryBytes uint64
	// Labels are extra platform labels from the provider's config.
	Labels map[string]string
}

// Instance is what a driver observed of one instance it started.
type Instance struct {
	InstanceID string
	// Handle is the driver's name for it (container id, Pod name).
	Handle string
	Phase  Phase
	// Reason explains a pending or exited instance in the platform's words
	// ("Unschedulable: 0/1 nodes are available: Insufficient cpu",
	// "ImagePullBackOff: ...", "exited with code 137 (OOMKilled)"); empty
	// while running normally.
	Reason string
	// Created is when the platform created it.
	Created time.Time
}

// Driver starts and stops agent instances on one platform. Every method
// must be safe for concurrent use and must honour ctx.
type Driver interface {
	// Kind is the driver's name: "docker", "kubernetes".
	Kind() string
	// Start creates and starts one instance and returns its handle. On
	// error nothing is left behind (the driver removes what it created).
	// A missing image wraps ErrImage, an unreachable platform wraps
	// ErrUnavailable. The Manager retries every failure with backoff and
	// parks the waiting jobs with the error's text as the reason.
	Start(ctx context.Context, req StartRequest) (handle string, err error)
	// Remove stops and deletes the instance at once (no grace: the Manager
	// drains agents through the protocol before it removes them) along
	// with anything the driver created for it (a Secret). Removing what is
	// already gone is not an error.
	Remove(ctx context.Context, handle string) error
	// List returns every instance carrying LabelManaged and
	// LabelOwner=owner, in any phase.
	List(ctx context.Context, owner string) ([]Instance, error)
}

// ErrUnavailable wraps driver errors that mean the platform could not be
// reached (engine socket, API server down).
var ErrUnavailable = errors.New("platform unavailable")

// ErrImage wraps driver errors about the image (missing, cannot be
// pulled).
var ErrImage = errors.New("agent image unavailable")

// OrphanSweeper is implemented by drivers that create more than the
// instance itself (a Kubernetes Secret beside each Pod). At start the
// Manager calls it after its own sweep: the driver deletes whatever it
// created for owner whose instance id is not in keep (a crash between
// creating a Secret and its Pod leaves such a thing).
type OrphanSweeper interface {
	SweepOrphans(ctx context.Context, owner string, keep map[string]bool) error
}
