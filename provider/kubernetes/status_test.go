package kubernetes

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hodei-jobs/hodei/provider"
)

func TestPodState(t *testing.T) {
	waiting := func(reason, msg string) containerStatus {
		return containerStatus{Name: ContainerName,
			State: containerState{Waiting: &containerStateWaiting{Reason: reason, Message: msg}}}
	}
	terminated := func(code int32, reason, msg string) containerStatus {
		return containerStatus{Name: ContainerName,
			State: containerState{Terminated: &containerStateTerminated{ExitCode: code, Reason: reason, Message: msg}}}
	}
	tests := []struct {
		name       string
		status     podStatus
		phase      provider.Phase
		wantReason string
	}{
		{"new", podStatus{}, provider.PhasePending, ""},
		{"pending", podStatus{Phase: podPending}, provider.PhasePending, ""},
		{"unschedulable", podStatus{Phase: podPending, Conditions: []podCondition{
			{Type: podScheduled, Status: conditionFalse, Reason: "Unschedulable", Message: "0/3 nodes are available: 3 Insufficient cpu."},
		}}, provider.PhasePending, "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."},
		{"scheduled, creating", podStatus{Phase: podPending,
			Conditions:        []podCondition{{Type: podScheduled, Status: "True"}},
			ContainerStatuses: []containerStatus{waiting("ContainerCreating", "")},
		}, provider.PhasePending, ""},
		{"image pull backoff", podStatus{Phase: podPending,
			ContainerStatuses: []containerStatus{waiting("ImagePullBackOff", `Back-off pulling image "nope:1"`)},
		}, provider.PhasePending, `ImagePullBackOff: Back-off pulling image "nope:1"`},
		{"init container", podStatus{Phase: podPending,
			InitContainerStatuses: []containerStatus{waiting("CreateContainerConfigError", `secret "x" not found`)},
			ContainerStatuses:     []containerStatus{waiting("PodInitializing", "")},
		}, provider.PhasePending, `CreateContainerConfigError: secret "x" not found`},
		{"unknown", podStatus{Phase: "Unknown", Reason: "NodeLost", Message: "node n1 stopped posting status"},
			provider.PhasePending, "NodeLost: node n1 stopped posting status"},
		{"running", podStatus{Phase: podRunning}, provider.PhaseRunning, ""},
		{"succeeded", podStatus{Phase: podSucceeded,
			ContainerStatuses: []containerStatus{terminated(0, "Completed", "")}}, provider.PhaseExited, "exited with code 0 (Completed)"},
		{"oom", podStatus{Phase: podFailed,
			ContainerStatuses: []containerStatus{terminated(137, "OOMKilled", "")}}, provider.PhaseExited, "exited with code 137 (OOMKilled)"},
		{"termination message", podStatus{Phase: podFailed,
			ContainerStatuses: []containerStatus{terminated(2, "Error", "bad token\n")}}, provider.PhaseExited, "exited with code 2 (Error): bad token"},
		{"evicted", podStatus{Phase: podFailed, Reason: "Evicted", Message: "The node was low on resource: memory.",
			ContainerStatuses: []containerStatus{terminated(137, "", "")}}, provider.PhaseExited,
			"Evicted: The node was low on resource: memory.; exited with code 137"},
		{"failed, no container", podStatus{Phase: podFailed, Reason: "DeadlineExceeded"}, provider.PhaseExited, "DeadlineExceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			phase, reason := podState(&pod{Status: tt.status})
			if phase != tt.phase || reason != tt.wantReason {
				t.Errorf("podState() = %s, %q, want %s, %q", phase, reason, tt.phase, tt.wantReason)
			}
		})
	}
}

func TestNewestWarning(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	evs := []event{
		{Type: eventWarning, Reason: "FailedMount", Message: "old", LastTimestamp: t0},
		{Type: "Normal", Reason: "Pulling", Message: "normal", LastTimestamp: t0.Add(time.Hour)},
		{Type: eventWarning, Reason: "FailedCreatePodSandBox", Message: "newest", EventTime: t0.Add(time.Minute)},
		{Type: eventWarning, Reason: "FailedScheduling", Message: "series",
			EventTime: t0, Series: &eventSeries{LastObservedTime: t0.Add(30 * time.Second)}},
	}
	if got, want := newestWarning(evs), "FailedCreatePodSandBox: newest"; got != want {
		t.Errorf("newestWarning() = %q, want %q", got, want)
	}
	if got := newestWarning(evs[1:2]); got != "" {
		t.Errorf("newestWarning(normal only) = %q, want empty", got)
	}
}

func TestClip(t *testing.T) {
	long := strings.Repeat("é", maxReason) // two bytes each
	got := clip(long)
	if !strings.HasSuffix(got, "…") || len(got) > maxReason+len("…") || !utf8.ValidString(got) {
		t.Errorf("clip() = %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
	if got := clip("short"); got != "short" {
		t.Errorf("clip(short) = %q", got)
	}
}

func TestAPIError(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "https://127.0.0.1:1/api",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	status := func(code int, reason string) error {
		return &statusError{Code: code, Reason: reason, Message: reason + " " + strconv.Itoa(code)}
	}
	tests := []struct {
		err         error
		unavailable bool
	}{
		{refused, true},
		{status(503, "ServiceUnavailable"), true},
		{status(503, ""), true},
		{status(504, "Timeout"), true},
		{status(504, ""), true},
		{status(500, "ServerTimeout"), true},
		{status(429, "TooManyRequests"), true},
		{status(429, "Forbidden"), true}, // as apierrors.IsTooManyRequests
		{fmt.Errorf("wrapped: %w", &net.DNSError{Err: "no such host", Name: "k8s.invalid"}), true},
		{errors.New(`Get "https://x/api": net/http: request canceled (Client.Timeout exceeded while awaiting headers)`), true},
		{status(404, "NotFound"), false},
		{status(403, "Forbidden"), false},
		{status(409, "AlreadyExists"), false},
		{status(500, "InternalError"), false},
		{status(503, "InternalError"), false}, // a known reason wins over the code
	}
	for _, tt := range tests {
		err := apiError("create pod p", tt.err)
		if got := errors.Is(err, provider.ErrUnavailable); got != tt.unavailable {
			t.Errorf("apiError(%v) unavailable = %v, want %v", tt.err, got, tt.unavailable)
		}
		if !errors.Is(err, tt.err) || !strings.HasPrefix(err.Error(), "kubernetes: create pod p: ") {
			t.Errorf("apiError(%v) = %v, want it wrapped and named", tt.err, err)
		}
	}
	if apiError("x", nil) != nil {
		t.Error("apiError(nil) != nil")
	}
}
