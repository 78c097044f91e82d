package k8stest

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/retry"
)

// The helpers below act on one Pod as the missing scheduler and kubelet
// would. They return errors rather than failing a test so they can run in
// a goroutine that plays the kubelet.

// NewNamespace creates a fresh namespace with its "default" ServiceAccount
// (no controller creates it here, and Pod admission requires it) and
// removes both, with every Pod in it, when t ends.
func (c *Cluster) NewNamespace(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "hodei-test-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	name := ns.Name
	t.Cleanup(func() {
		if err := c.DeleteNamespace(context.Background(), name); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	_, err = c.Client.CoreV1().ServiceAccounts(name).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service account %s/default: %v", name, err)
	}
	return name
}

// DeleteNamespace force-deletes ns's Pods and finalizes the namespace's
// deletion, which the missing namespace controller would do; its other
// objects stay in etcd until Stop.
func (c *Cluster) DeleteNamespace(ctx context.Context, ns string) error {
	err := c.Client.CoreV1().Pods(ns).DeleteCollection(ctx,
		metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if err := c.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		return ignoreNotFound(err)
	}
	n, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		return ignoreNotFound(err)
	}
	n.Spec.Finalizers = nil
	_, err = c.Client.CoreV1().Namespaces().Finalize(ctx, n, metav1.UpdateOptions{})
	return ignoreNotFound(err)
}

// BindPod assigns the Pod to node, as the scheduler would; the node need
// not exist.
func (c *Cluster) BindPod(ctx context.Context, ns, pod, node string) error {
	return c.Client.CoreV1().Pods(ns).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}, metav1.CreateOptions{})
}

// UpdateStatus applies change to the Pod's status (retrying on
// conflicts), as a kubelet would.
func (c *Cluster) UpdateStatus(ctx context.Context, ns, pod string, change func(*corev1.Pod)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(p)
		_, err = c.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
}

// SetRunning marks the Pod Running and Ready with every container
// running. Bind it first.
func (c *Cluster) SetRunning(ctx context.Context, ns, pod string) error {
	return c.UpdateStatus(ctx, ns, pod, func(p *corev1.Pod) {
		now := metav1.Now()
		p.Status.Phase = corev1.PodRunning
		p.Status.Reason, p.Status.Message = "", ""
		p.Status.HostIP = "10.1.0.1"
		p.Status.PodIP = "10.2.0.1"
		p.Status.StartTime = &now
		for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
			setCondition(p, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue})
		}
		p.Status.ContainerStatuses = containerStatuses(p, func(cs *corev1.ContainerStatus) {
			cs.Ready, cs.Started = true, new(true)
			cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
		})
	})
}

// SetPhase ends the Pod: Succeeded (exit code 0) or Failed (exit code 1),
// with reason as the container's termination reason.
func (c *Cluster) SetPhase(ctx context.Context, ns, pod string, phase corev1.PodPhase, reason string) error {
	switch phase {
	case corev1.PodSucceeded:
		return c.SetExited(ctx, ns, pod, 0, reason)
	case corev1.PodFailed:
		return c.SetExited(ctx, ns, pod, 1, reason)
	}
	return fmt.Errorf("SetPhase %s: want Succeeded or Failed", phase)
}

// SetExited ends the Pod with every container terminated with exitCode
// and reason ("OOMKilled"); the phase is Succeeded for 0, else Failed.
func (c *Cluster) SetExited(ctx context.Context, ns, pod string, exitCode int32, reason string) error {
	return c.UpdateStatus(ctx, ns, pod, func(p *corev1.Pod) {
		now := metav1.Now()
		p.Status.Phase = corev1.PodSucceeded
		if exitCode != 0 {
			p.Status.Phase = corev1.PodFailed
		}
		for _, t := range []corev1.PodConditionType{corev1.ContainersReady, corev1.PodReady} {
			setCondition(p, corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: "PodCompleted"})
		}
		p.Status.ContainerStatuses = containerStatuses(p, func(cs *corev1.ContainerStatus) {
			cs.Ready, cs.Started = false, new(false)
			started := now
			if cs.State.Running != nil {
				started = cs.State.Running.StartedAt
			}
			cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: exitCode, Reason: reason, StartedAt: started, FinishedAt: now,
			}}
		})
	})
}

// SetWaiting gives every container a waiting state, as the kubelet
// reports an image it cannot pull ("ImagePullBackOff", `Back-off pulling
// image "x"`).
func (c *Cluster) SetWaiting(ctx context.Context, ns, pod, reason, message string) error {
	return c.UpdateStatus(ctx, ns, pod, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodPending
		p.Status.ContainerStatuses = containerStatuses(p, func(cs *corev1.ContainerStatus) {
			cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}
		})
	})
}

// MarkUnschedulable sets the PodScheduled condition to False with reason
// Unschedulable, as the scheduler does when no node fits ("0/3 nodes are
// available: 3 Insufficient cpu.").
func (c *Cluster) MarkUnschedulable(ctx context.Context, ns, pod, message string) error {
	return c.UpdateStatus(ctx, ns, pod, func(p *corev1.Pod) {
		setCondition(p, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
			Reason: corev1.PodReasonUnschedulable, Message: message})
	})
}

// Warn records a Warning Event about the Pod, as the kubelet does for a
// failed mount or sandbox.
func (c *Cluster) Warn(ctx context.Context, ns, pod, reason, message string) error {
	p, err := c.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	_, err = c.Client.CoreV1().Events(ns).Create(ctx, &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: pod + "."},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: ns, Name: pod,
			UID: p.UID, ResourceVersion: p.ResourceVersion},
		Type: corev1.EventTypeWarning, Reason: reason, Message: message,
		Source:         corev1.EventSource{Component: "kubelet", Host: p.Spec.NodeName},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}, metav1.CreateOptions{})
	return err
}

// ForceDelete deletes the Pod with no grace period, as a kubelet confirms
// a deletion; a missing Pod is not an error.
func (c *Cluster) ForceDelete(ctx context.Context, ns, pod string) error {
	err := c.Client.CoreV1().Pods(ns).Delete(ctx, pod, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))})
	return ignoreNotFound(err)
}

// PodEnv resolves the agent container's environment as the kubelet
// would: plain values, secretKeyRef and configMapKeyRef lookups, and
// metadata fieldRefs. A test can run the agent binary locally with it
// (append to os.Environ() for PATH and HOME). Keys missing from an
// optional reference are left out.
func (c *Cluster) PodEnv(ctx context.Context, ns, pod string) (map[string]string, error) {
	p, err := c.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if len(p.Spec.Containers) == 0 {
		return nil, fmt.Errorf("pod %s/%s has no containers", ns, pod)
	}
	env := map[string]string{}
	for _, e := range p.Spec.Containers[0].Env {
		v, ok, err := c.envValue(ctx, p, e)
		if err != nil {
			return nil, fmt.Errorf("pod %s/%s env %s: %w", ns, pod, e.Name, err)
		}
		if ok {
			env[e.Name] = v
		}
	}
	return env, nil
}

func (c *Cluster) envValue(ctx context.Context, p *corev1.Pod, e corev1.EnvVar) (string, bool, error) {
	src := e.ValueFrom
	switch {
	case src == nil:
		return e.Value, true, nil
	case src.SecretKeyRef != nil:
		r := src.SecretKeyRef
		s, err := c.Client.CoreV1().Secrets(p.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if err == nil {
			if v, ok := s.Data[r.Key]; ok {
				return string(v), true, nil
			}
			err = fmt.Errorf("secret %s has no key %s", r.Name, r.Key)
		}
		if r.Optional != nil && *r.Optional {
			return "", false, nil
		}
		return "", false, err
	case src.ConfigMapKeyRef != nil:
		r := src.ConfigMapKeyRef
		m, err := c.Client.CoreV1().ConfigMaps(p.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if err == nil {
			if v, ok := m.Data[r.Key]; ok {
				return v, true, nil
			}
			err = fmt.Errorf("configmap %s has no key %s", r.Name, r.Key)
		}
		if r.Optional != nil && *r.Optional {
			return "", false, nil
		}
		return "", false, err
	case src.FieldRef != nil:
		switch src.FieldRef.FieldPath {
		case "metadata.name":
			return p.Name, true, nil
		case "metadata.namespace":
			return p.Namespace, true, nil
		case "metadata.uid":
			return string(p.UID), true, nil
		case "spec.nodeName":
			return p.Spec.NodeName, true, nil
		case "spec.serviceAccountName":
			return p.Spec.ServiceAccountName, true, nil
		case "status.podIP":
			return p.Status.PodIP, true, nil
		case "status.hostIP":
			return p.Status.HostIP, true, nil
		}
		return "", false, fmt.Errorf("unsupported fieldRef %s", src.FieldRef.FieldPath)
	}
	return "", false, fmt.Errorf("unsupported valueFrom")
}

// WaitPod waits until a Pod in ns matching the label selector (empty:
// any) satisfies cond, and returns it. It lists, then watches, so it sees
// Pods that existed before the call.
func (c *Cluster) WaitPod(ctx context.Context, ns, selector string, cond func(*corev1.Pod) bool) (*corev1.Pod, error) {
	pods := c.Client.CoreV1().Pods(ns)
	for {
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil, err
		}
		for i := range list.Items {
			if cond(&list.Items[i]) {
				return &list.Items[i], nil
			}
		}
		w, err := pods.Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: list.ResourceVersion})
		if err != nil {
			return nil, err
		}
		p, err := waitWatch(ctx, w, cond)
		w.Stop()
		if p != nil || err != nil {
			return p, err
		}
		// The watch ended (server timeout, expired version): list again.
	}
}

func waitWatch(ctx context.Context, w watch.Interface, cond func(*corev1.Pod) bool) (*corev1.Pod, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type == watch.Error {
				return nil, nil
			}
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type != watch.Deleted && cond(p) {
				return p, nil
			}
		}
	}
}

// PodGone waits until the Pod no longer exists.
func (c *Cluster) PodGone(ctx context.Context, ns, pod string) error {
	sel := fields.OneTermEqualSelector("metadata.name", pod).String()
	for {
		_, err := c.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		w, err := c.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return err
		}
		gone, err := watchDeleted(ctx, w)
		w.Stop()
		if gone || err != nil {
			return err
		}
	}
}

func watchDeleted(ctx context.Context, w watch.Interface) (bool, error) {
	timeout := time.NewTimer(time.Second) // re-check with Get now and then
	defer timeout.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-timeout.C:
			return false, nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false, nil
			}
			if ev.Type == watch.Deleted {
				return true, nil
			}
		}
	}
}

func containerStatuses(p *corev1.Pod, set func(*corev1.ContainerStatus)) []corev1.ContainerStatus {
	var out []corev1.ContainerStatus
	for _, ctr := range p.Spec.Containers {
		cs := corev1.ContainerStatus{Name: ctr.Name, Image: ctr.Image}
		for _, old := range p.Status.ContainerStatuses {
			if old.Name == ctr.Name {
				cs = old
			}
		}
		set(&cs)
		out = append(out, cs)
	}
	return out
}

func setCondition(p *corev1.Pod, c corev1.PodCondition) {
	c.LastTransitionTime = metav1.Now()
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == c.Type {
			p.Status.Conditions[i] = c
			return
		}
	}
	p.Status.Conditions = append(p.Status.Conditions, c)
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
