package kubernetes

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hodei-jobs/hodei/provider"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestPodState(t *testing.T) {
	waiting := func(reason, msg string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: ContainerName,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}
	}
	terminated := func(code int32, reason, msg string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: ContainerName,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: msg}}}
	}
	tests := []struct {
		name       string
		status     corev1.PodStatus
		phase      provider.Phase
		wantReason string
	}{
		{"new", corev1.PodStatus{}, provider.PhasePending, ""},
		{"pending", corev1.PodStatus{Phase: corev1.PodPending}, provider.PhasePending, ""},
		{"unschedulable", corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "0/3 nodes are available: 3 Insufficient cpu."},
		}}, provider.PhasePending, "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."},
		{"scheduled, creating", corev1.PodStatus{Phase: corev1.PodPending,
			Conditions:        []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{waiting("ContainerCreating", "")},
		}, provider.PhasePending, ""},
		{"image pull backoff", corev1.PodStatus{Phase: corev1.PodPending,
			ContainerStatuses: []corev1.ContainerStatus{waiting("ImagePullBackOff", `Back-off pulling image "nope:1"`)},
		}, provider.PhasePending, `ImagePullBackOff: Back-off pulling image "nope:1"`},
		{"init container", corev1.PodStatus{Phase: corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{waiting("CreateContainerConfigError", `secret "x" not found`)},
			ContainerStatuses:     []corev1.ContainerStatus{waiting("PodInitializing", "")},
		}, provider.PhasePending, `CreateContainerConfigError: secret "x" not found`},
		{"unknown", corev1.PodStatus{Phase: corev1.PodUnknown, Reason: "NodeLost", Message: "node n1 stopped posting status"},
			provider.PhasePending, "NodeLost: node n1 stopped posting status"},
		{"running", corev1.PodStatus{Phase: corev1.PodRunning}, provider.PhaseRunning, ""},
		{"succeeded", corev1.PodStatus{Phase: corev1.PodSucceeded,
			ContainerStatuses: []corev1.ContainerStatus{terminated(0, "Completed", "")}}, provider.PhaseExited, "exited with code 0 (Completed)"},
		{"oom", corev1.PodStatus{Phase: corev1.PodFailed,
			ContainerStatuses: []corev1.ContainerStatus{terminated(137, "OOMKilled", "")}}, provider.PhaseExited, "exited with code 137 (OOMKilled)"},
		{"termination message", corev1.PodStatus{Phase: corev1.PodFailed,
			ContainerStatuses: []corev1.ContainerStatus{terminated(2, "Error", "bad token\n")}}, provider.PhaseExited, "exited with code 2 (Error): bad token"},
		{"evicted", corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "The node was low on resource: memory.",
			ContainerStatuses: []corev1.ContainerStatus{terminated(137, "", "")}}, provider.PhaseExited,
			"Evicted: The node was low on resource: memory.; exited with code 137"},
		{"failed, no container", corev1.PodStatus{Phase: corev1.PodFailed, Reason: "DeadlineExceeded"}, provider.PhaseExited, "DeadlineExceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			phase, reason := podState(&corev1.Pod{Status: tt.status})
			if phase != tt.phase || reason != tt.wantReason {
				t.Errorf("podState() = %s, %q, want %s, %q", phase, reason, tt.phase, tt.wantReason)
			}
		})
	}
}

func TestNewestWarning(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	evs := []corev1.Event{
		{Type: corev1.EventTypeWarning, Reason: "FailedMount", Message: "old", LastTimestamp: metav1.NewTime(t0)},
		{Type: corev1.EventTypeNormal, Reason: "Pulling", Message: "normal", LastTimestamp: metav1.NewTime(t0.Add(time.Hour))},
		{Type: corev1.EventTypeWarning, Reason: "FailedCreatePodSandBox", Message: "newest", EventTime: metav1.NewMicroTime(t0.Add(time.Minute))},
		{Type: corev1.EventTypeWarning, Reason: "FailedScheduling", Message: "series",
			EventTime: metav1.NewMicroTime(t0), Series: &corev1.EventSeries{LastObservedTime: metav1.NewMicroTime(t0.Add(30 * time.Second))}},
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
	gr := schema.GroupResource{Resource: "pods"}
	tests := []struct {
		err         error
		unavailable bool
	}{
		{refused, true},
		{apierrors.NewServiceUnavailable("etcd down"), true},
		{apierrors.NewTimeoutError("slow", 1), true},
		{apierrors.NewTooManyRequests("slow down", 1), true},
		{fmt.Errorf("wrapped: %w", &net.DNSError{Err: "no such host", Name: "k8s.invalid"}), true},
		{errors.New(`Get "https://x/api": net/http: request canceled (Client.Timeout exceeded while awaiting headers)`), true},
		{apierrors.NewNotFound(gr, "p"), false},
		{apierrors.NewForbidden(gr, "p", errors.New("no")), false},
		{apierrors.NewAlreadyExists(gr, "p"), false},
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
