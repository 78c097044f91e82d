package kubernetes

import (
	"fmt"
	"strings"
	"time"

	"github.com/hodei-jobs/hodei/provider"
)

// maxReason bounds a Reason: messages come from the cluster (a container's
// termination message can be 4 KiB) and end up in events and the UI.
const maxReason = 512

// podState maps a Pod's status to a provider phase and the reason the
// status itself gives. A pending Pod without one may still be explained
// by its Events (see Driver.warning).
func podState(p *pod) (provider.Phase, string) {
	switch p.Status.Phase {
	case podRunning:
		return provider.PhaseRunning, ""
	case podSucceeded, podFailed:
		return provider.PhaseExited, clip(exitedReason(p))
	default: // Pending, Unknown (node lost), or not set yet
		return provider.PhasePending, clip(pendingReason(p))
	}
}

// pendingReason: why the Pod is not running, in the order a person would
// look: not scheduled, then a container that cannot start.
func pendingReason(p *pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == podScheduled && c.Status == conditionFalse && c.Reason != "" {
			return join(c.Reason, c.Message)
		}
	}
	for _, cs := range [][]containerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, c := range cs {
			w := c.State.Waiting
			// ContainerCreating and PodInitializing are the normal way
			// to start; everything else (ErrImagePull, ImagePullBackOff,
			// CreateContainerConfigError, InvalidImageName) is a problem.
			if w == nil || w.Reason == "" || w.Reason == "ContainerCreating" || w.Reason == "PodInitializing" {
				continue
			}
			return join(w.Reason, w.Message)
		}
	}
	if p.Status.Reason != "" {
		return join(p.Status.Reason, p.Status.Message)
	}
	return ""
}

// exitedReason: the Pod's own reason (Evicted, DeadlineExceeded) and the
// agent container's exit code.
func exitedReason(p *pod) string {
	var parts []string
	if p.Status.Reason != "" {
		parts = append(parts, join(p.Status.Reason, p.Status.Message))
	}
	for _, c := range p.Status.ContainerStatuses {
		t := c.State.Terminated
		if c.Name != ContainerName || t == nil {
			continue
		}
		s := fmt.Sprintf("exited with code %d", t.ExitCode)
		if t.Reason != "" {
			s += " (" + t.Reason + ")"
		}
		if m := strings.TrimSpace(t.Message); m != "" {
			s += ": " + m
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// newestWarning returns "Reason: message" of the most recent Warning
// event, or "".
func newestWarning(evs []event) string {
	var (
		best string
		at   time.Time
	)
	for _, e := range evs {
		if e.Type != eventWarning {
			continue
		}
		if t := eventTime(e); best == "" || t.After(at) {
			best, at = join(e.Reason, e.Message), t
		}
	}
	return clip(best)
}

// eventTime is when an event last happened: core/v1 events written by
// old clients set LastTimestamp, events.k8s.io/v1 ones (the scheduler,
// the kubelet) set EventTime or a Series.
func eventTime(e event) time.Time {
	t := e.Metadata.CreationTimestamp
	for _, c := range []time.Time{e.FirstTimestamp, e.LastTimestamp, e.EventTime} {
		if c.After(t) {
			t = c
		}
	}
	if e.Series != nil && e.Series.LastObservedTime.After(t) {
		t = e.Series.LastObservedTime
	}
	return t
}

func join(reason, message string) string {
	message = strings.TrimSpace(message)
	switch {
	case message == "":
		return reason
	case reason == "":
		return message
	}
	return reason + ": " + message
}

func clip(s string) string {
	if len(s) <= maxReason {
		return s
	}
	s = s[:maxReason]
	// Cut on a rune boundary.
	for len(s) > 0 && s[len(s)-1]&0xC0 == 0x80 {
		s = s[:len(s)-1]
	}
	if len(s) > 0 && s[len(s)-1] >= 0xC0 {
		s = s[:len(s)-1]
	}
	return s + "…"
}
