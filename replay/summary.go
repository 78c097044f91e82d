package replay

import (
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
)

// TimeFormat is how replay prints times for people: RFC 3339 in UTC with
// milliseconds. Machine output (export, -o json) keeps nanoseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Summary returns a readable one-line description of a domain event, e.g.
// "scheduled attempt 2 on w-7 (accept by ...)". Events of types this binary
// does not know (ev is nil or not a domain event) are summarised from their
// raw fields with FieldsSummary.
func Summary(ev eventstore.Event) string {
	switch e := ev.(type) {
	case domain.JobSubmitted:
		s := e.Spec.WithDefaults()
		var b strings.Builder
		fmt.Fprintf(&b, "submitted %q by %s to queue %s (priority %d, %s, max %s",
			s.Name, e.Submitter, s.Queue, s.Priority, resources(s.Resources), plural(s.MaxAttempts, "attempt"))
		if s.Timeout > 0 {
			fmt.Fprintf(&b, ", timeout %s", s.Timeout)
		}
		if len(s.Selector) > 0 {
			fmt.Fprintf(&b, ", needs %s", labels(s.Selector))
		}
		if len(s.Secrets) > 0 {
			fmt.Fprintf(&b, ", secrets %s", strings.Join(slices.Sorted(maps.Values(s.Secrets)), ","))
		}
		b.WriteString(")")
		return b.String()
	case domain.JobParked:
		return "parked: " + e.Reason
	case domain.JobUnparked:
		return "unparked"
	case domain.JobScheduled:
		s := fmt.Sprintf("scheduled attempt %d on %s, reserving %s", e.Attempt, e.WorkerID, resources(e.Resources))
		if !e.AcceptBy.IsZero() {
			s += " (accept by " + e.AcceptBy.UTC().Format(TimeFormat) + ")"
		}
		return s
	case domain.JobAccepted:
		return fmt.Sprintf("attempt %d accepted by %s", e.Attempt, e.WorkerID)
	case domain.JobStarted:
		return fmt.Sprintf("attempt %d started on %s", e.Attempt, e.WorkerID)
	case domain.JobCancelRequested:
		return "cancel requested by " + e.By + because(e.Reason)
	case domain.JobRequeued:
		return fmt.Sprintf("attempt %d on %s ended without a result%s; re-queued", e.Attempt, e.WorkerID, because(e.Reason))
	case domain.JobSucceeded:
		return fmt.Sprintf("succeeded: attempt %d on %s ran %s", e.Attempt, e.WorkerID, e.Runtime)
	case domain.JobFailed:
		reason := e.Reason
		if reason == fmt.Sprintf("exit status %d", e.ExitCode) || reason == "killed by "+e.Signal {
			reason = "" // the exit status says it
		}
		return fmt.Sprintf("failed: attempt %d%s, %s%s", e.Attempt, on(e.WorkerID), exit(e.ExitCode, e.Signal, e.Runtime), because(reason))
	case domain.JobCancelled:
		if e.WorkerID == "" {
			return "cancelled while queued by " + e.By + because(e.Reason)
		}
		return fmt.Sprintf("cancelled by %s%s: attempt %d%s, %s", e.By, because(e.Reason), e.Attempt, on(e.WorkerID), exit(e.ExitCode, e.Signal, e.Runtime))
	case domain.JobTimedOut:
		return fmt.Sprintf("timed out: attempt %d%s, %s%s", e.Attempt, on(e.WorkerID), exit(e.ExitCode, e.Signal, e.Runtime), because(e.Reason))
	case domain.WorkerRegistered:
		return "registered " + workerInfo(e.Info)
	case domain.WorkerReconnected:
		return "reconnected " + workerInfo(e.Info)
	case domain.WorkerDrainStarted:
		return "drain started by " + e.By + because(e.Reason)
	case domain.WorkerResumed:
		return "resumed by " + e.By
	case domain.WorkerLost:
		s := "lost" + because(e.Reason)
		if !e.LastSeen.IsZero() {
			s += " (last seen " + e.LastSeen.UTC().Format(TimeFormat) + ")"
		}
		return s
	case domain.WorkerDeregistered:
		return "deregistered" + because(e.Reason)
	case domain.WorkerEnrolled:
		s := "enrolled"
		if e.TokenID != "" {
			s += " with join token " + e.TokenID
		}
		if e.Replaces != "" {
			s += ", replacing " + e.Replaces
		}
		return s + certSummary(e.Cert)
	case domain.WorkerIdentityRenewed:
		return "identity renewed until " + e.IdentityExpiresAt.UTC().Format(TimeFormat) + certSummary(e.Cert)
	case domain.WorkerIdentityRevoked:
		return "identity revoked by " + e.By + because(e.Reason)
	case domain.InstanceRequested:
		kind := "instance"
		if e.Ephemeral {
			kind = "ephemeral instance"
		}
		return fmt.Sprintf("%s %s requested from provider %s (%s)", e.Driver, kind, e.Provider, e.Reason)
	case domain.InstanceStarted:
		return "started as " + e.Handle
	case domain.InstanceConnected:
		return "agent connected as worker " + e.WorkerID
	case domain.InstanceFailed:
		return "failed" + because(e.Reason)
	case domain.InstanceTerminated:
		return "terminated" + because(e.Reason)
	}
	return fmt.Sprintf("%T", ev)
}

func certSummary(c domain.CertRef) string {
	if c.Serial == "" {
		return ""
	}
	return fmt.Sprintf("; certificate %s valid until %s", c.Serial, c.NotAfter.UTC().Format(TimeFormat))
}

// FieldsSummary renders raw payload fields (eventstore.DecodeFields) on one
// line, keys sorted: the summary of an event type this binary does not know.
func FieldsSummary(fields map[string]any) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(fields)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(fieldString(fields[k]))
	}
	return b.String()
}

func fieldString(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		if v == "" || strings.ContainsAny(v, " \t\n\"=") {
			return strconv.Quote(v)
		}
		return v
	case []byte:
		return "base64:" + base64.StdEncoding.EncodeToString(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case map[string]any:
		return "{" + FieldsSummary(v) + "}"
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = fieldString(x)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return fmt.Sprint(v)
}

func because(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

func on(worker string) string {
	if worker == "" {
		return ""
	}
	return " on " + worker
}

func exit(code int, signal string, runtime time.Duration) string {
	var s string
	switch {
	case signal != "":
		s = "killed by " + signal
	case code < 0:
		s = "no exit status"
	default:
		s = fmt.Sprintf("exit %d", code)
	}
	if runtime > 0 {
		s += " after " + runtime.String()
	}
	return s
}

func plural[N int | int64 | uint32](n N, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func resources(r domain.Resources) string {
	s := plural(r.Slots, "slot")
	if r.CPUMillis > 0 {
		s += fmt.Sprintf(", %dm CPU", r.CPUMillis)
	}
	if r.MemoryBytes > 0 {
		s += ", " + bytesIEC(r.MemoryBytes)
	}
	return s
}

func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	units := []string{"Ki", "Mi", "Gi", "Ti", "Pi"}
	v, i := float64(n)/unit, 0
	for v >= unit && i < len(units)-1 {
		v /= unit
		i++
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d%s", int64(v), units[i])
	}
	return fmt.Sprintf("%.1f%s", v, units[i])
}

func labels(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func workerInfo(i domain.WorkerInfo) string {
	s := fmt.Sprintf("%q (%s", i.Name, resources(i.Capacity))
	if i.AgentVersion != "" {
		s += "; agent " + i.AgentVersion
	}
	if len(i.Labels) > 0 {
		s += "; " + labels(i.Labels)
	}
	return s + ")"
}
