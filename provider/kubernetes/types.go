package kubernetes

import (
	"strconv"
	"time"
)

// The core/v1 objects the driver writes and reads, with only the fields it
// uses. Unknown fields in the API server's answers are ignored; fields the
// driver never sets are left out of what it sends, so the API server
// defaults them as it would for any client.

type objectMeta struct {
	Name              string            `json:"name,omitempty"`
	UID               string            `json:"uid,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	CreationTimestamp time.Time         `json:"creationTimestamp,omitzero"`
	OwnerReferences   []ownerReference  `json:"ownerReferences,omitempty"`
}

type ownerReference struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
}

// Pod phases, condition types and statuses, and event types the driver
// looks for.
const (
	podPending   = "Pending"
	podRunning   = "Running"
	podSucceeded = "Succeeded"
	podFailed    = "Failed"

	podScheduled   = "PodScheduled"
	conditionFalse = "False"

	eventWarning = "Warning"
)

type pod struct {
	APIVersion string     `json:"apiVersion,omitempty"`
	Kind       string     `json:"kind,omitempty"`
	Metadata   objectMeta `json:"metadata"`
	Spec       podSpec    `json:"spec"`
	Status     podStatus  `json:"status,omitzero"`
}

type podSpec struct {
	RestartPolicy                string      `json:"restartPolicy,omitempty"`
	Hostname                     string      `json:"hostname,omitempty"`
	ServiceAccountName           string      `json:"serviceAccountName,omitempty"`
	AutomountServiceAccountToken *bool       `json:"automountServiceAccountToken,omitempty"`
	Containers                   []container `json:"containers"`
}

type container struct {
	Name            string                `json:"name"`
	Image           string                `json:"image,omitempty"`
	ImagePullPolicy string                `json:"imagePullPolicy,omitempty"`
	Env             []envVar              `json:"env,omitempty"`
	Resources       *resourceRequirements `json:"resources,omitempty"`
}

type envVar struct {
	Name      string        `json:"name"`
	Value     string        `json:"value,omitempty"`
	ValueFrom *envVarSource `json:"valueFrom,omitempty"`
}

type envVarSource struct {
	FieldRef     *objectFieldSelector `json:"fieldRef,omitempty"`
	SecretKeyRef *secretKeySelector   `json:"secretKeyRef,omitempty"`
}

type objectFieldSelector struct {
	APIVersion string `json:"apiVersion,omitempty"`
	FieldPath  string `json:"fieldPath"`
}

type secretKeySelector struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// resourceRequirements maps resource names ("cpu", "memory") to
// quantities in their canonical text form.
type resourceRequirements struct {
	Limits   map[string]string `json:"limits,omitempty"`
	Requests map[string]string `json:"requests,omitempty"`
}

type podStatus struct {
	Phase                 string            `json:"phase,omitempty"`
	Reason                string            `json:"reason,omitempty"`
	Message               string            `json:"message,omitempty"`
	Conditions            []podCondition    `json:"conditions,omitempty"`
	InitContainerStatuses []containerStatus `json:"initContainerStatuses,omitempty"`
	ContainerStatuses     []containerStatus `json:"containerStatuses,omitempty"`
}

type podCondition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

type containerStatus struct {
	Name  string         `json:"name"`
	State containerState `json:"state,omitzero"`
}

type containerState struct {
	Waiting    *containerStateWaiting    `json:"waiting,omitempty"`
	Terminated *containerStateTerminated `json:"terminated,omitempty"`
}

type containerStateWaiting struct {
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

type containerStateTerminated struct {
	ExitCode int32  `json:"exitCode"`
	Reason   string `json:"reason,omitempty"`
	Message  string `json:"message,omitempty"`
}

type podList struct {
	Items []pod `json:"items"`
}

type secret struct {
	APIVersion string            `json:"apiVersion,omitempty"`
	Kind       string            `json:"kind,omitempty"`
	Metadata   objectMeta        `json:"metadata"`
	Type       string            `json:"type,omitempty"`
	Data       map[string][]byte `json:"data,omitempty"`
}

// event is a core/v1 Event. Its times are null when unset, which
// encoding/json leaves as the zero time.
type event struct {
	Metadata       objectMeta   `json:"metadata"`
	Type           string       `json:"type,omitempty"`
	Reason         string       `json:"reason,omitempty"`
	Message        string       `json:"message,omitempty"`
	FirstTimestamp time.Time    `json:"firstTimestamp,omitzero"`
	LastTimestamp  time.Time    `json:"lastTimestamp,omitzero"`
	EventTime      time.Time    `json:"eventTime,omitzero"`
	Series         *eventSeries `json:"series,omitempty"`
}

type eventSeries struct {
	LastObservedTime time.Time `json:"lastObservedTime,omitzero"`
}

type eventList struct {
	Items []event `json:"items"`
}

// deleteOptions is the body of a delete or deletecollection call.
type deleteOptions struct {
	APIVersion         string `json:"apiVersion"`
	Kind               string `json:"kind"`
	GracePeriodSeconds *int64 `json:"gracePeriodSeconds,omitempty"`
}

// milliCPU formats a CPU amount as the API server's canonical quantity
// ("1500m", "2", "1k"), as resource.NewMilliQuantity(m, DecimalSI) would.
func milliCPU(m int64) string { return decimalSI(m, -3) }

// memoryBytes formats a byte count as the API server's canonical quantity
// ("512Mi", "1536", "1k"), as resource.NewQuantity(b, BinarySI) would:
// a binary suffix when the amount is a multiple of 1024 and at least
// 1024, decimal notation below 1024.
func memoryBytes(b int64) string {
	if b > -1024 && b < 1024 {
		return decimalSI(b, 0)
	}
	suffixes := []string{"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"}
	i := 0
	for i < len(suffixes)-1 && b%1024 == 0 {
		b /= 1024
		i++
	}
	return strconv.FormatInt(b, 10) + suffixes[i]
}

// decimalSI formats v × 10^exp with the largest SI suffix that keeps the
// number an integer. exp is -3 or more and a multiple of 3.
func decimalSI(v int64, exp int) string {
	if v == 0 {
		return "0"
	}
	for v%1000 == 0 && exp < 18 {
		v /= 1000
		exp += 3
	}
	suffix := map[int]string{-3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}[exp]
	return strconv.FormatInt(v, 10) + suffix
}
