package k8stest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// Kubelet plays scheduler and kubelet for the Pods of one namespace, with
// local processes for containers: it binds each new Pod, starts the
// process Command returns for it with the Pod's resolved environment,
// marks the Pod Running, and marks it Succeeded or Failed with the exit
// code when the process ends. Deleting a Pod kills its process.
//
// End-to-end tests run the real agent binary this way:
//
//	k := &k8stest.Kubelet{Cluster: c, Namespace: ns,
//		Command: func(ctx context.Context, p *corev1.Pod, env map[string]string) *exec.Cmd {
//			cmd := exec.Command(agentBin)
//			cmd.Env = k8stest.Environ(env)
//			return cmd
//		}}
//	go k.Run(ctx) // and wait for it before the test ends
type Kubelet struct {
	Cluster   *Cluster
	Namespace string
	// Selector is a label selector limiting the Pods it runs; empty: all.
	Selector string
	// Node is the node Pods are bound to; default "node-1".
	Node string
	// Admit, when set, decides whether a Pod runs. A Pod it refuses gets
	// the scheduler's Unschedulable condition with the returned message
	// and is never looked at again.
	Admit func(p *corev1.Pod) (ok bool, message string)
	// Command returns the unstarted process standing for the Pod's
	// container. Run starts it, and kills it when the Pod is deleted or
	// Run's context ends.
	Command func(ctx context.Context, p *corev1.Pod, env map[string]string) *exec.Cmd
	// Exited, when set, is called after a process ended (on its own or
	// killed) and before the Pod's status says so.
	Exited func(p *corev1.Pod, state *os.ProcessState)
}

// Run handles Pods until ctx ends, then kills the processes it started,
// waits for them and returns the errors it met (nil when none).
func (k *Kubelet) Run(ctx context.Context) error {
	if k.Command == nil {
		return errors.New("k8stest: Kubelet.Command is nil")
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		errs    []error
		seen    = map[types.UID]bool{}
		running = map[types.UID]context.CancelFunc{}
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	defer func() {
		for _, cancel := range running {
			cancel()
		}
		wg.Wait()
	}()
	handle := func(p *corev1.Pod) {
		if p.DeletionTimestamp != nil {
			if cancel, ok := running[p.UID]; ok {
				cancel()
			}
			return
		}
		if seen[p.UID] {
			return
		}
		seen[p.UID] = true
		if p.Spec.NodeName != "" || p.Status.Phase != corev1.PodPending && p.Status.Phase != "" {
			return // bound by someone else
		}
		if k.Admit != nil {
			if ok, msg := k.Admit(p); !ok {
				if err := k.Cluster.MarkUnschedulable(ctx, k.Namespace, p.Name, msg); err != nil && ctx.Err() == nil {
					fail(fmt.Errorf("mark %s unschedulable: %w", p.Name, err))
				}
				return
			}
		}
		pctx, cancel := context.WithCancel(ctx)
		running[p.UID] = cancel
		wg.Go(func() {
			if err := k.run(pctx, p); err != nil && pctx.Err() == nil {
				fail(fmt.Errorf("pod %s: %w", p.Name, err))
			}
		})
	}

	pods := k.Cluster.Client.CoreV1().Pods(k.Namespace)
	for ctx.Err() == nil {
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: k.Selector})
		if err != nil {
			if ctx.Err() == nil {
				fail(err)
			}
			break
		}
		for i := range list.Items {
			handle(&list.Items[i])
		}
		w, err := pods.Watch(ctx, metav1.ListOptions{LabelSelector: k.Selector, ResourceVersion: list.ResourceVersion})
		if err != nil {
			if ctx.Err() == nil {
				fail(err)
			}
			break
		}
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				break // watch.Error: list again
			}
			if ev.Type == watch.Deleted {
				if cancel, ok := running[p.UID]; ok {
					cancel()
				}
				continue
			}
			handle(p)
		}
		w.Stop()
	}
	mu.Lock()
	defer mu.Unlock()
	return errors.Join(errs...)
}

// run binds the Pod, runs its process and reports its end. A cancelled
// ctx means the Pod was deleted (or Run ends): its status is left alone.
func (k *Kubelet) run(ctx context.Context, p *corev1.Pod) error {
	node := k.Node
	if node == "" {
		node = "node-1"
	}
	c, ns := k.Cluster, k.Namespace
	if err := c.BindPod(ctx, ns, p.Name, node); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	env, err := c.PodEnv(ctx, ns, p.Name)
	if err != nil {
		return err
	}
	cmd := k.Command(ctx, p, env)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = sysProcAttr()
	}
	if err := cmd.Start(); err != nil {
		// What containerd reports for an entrypoint that cannot start.
		return ignoreNotFound(c.SetExited(ctx, ns, p.Name, 128, "StartError"))
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	if err := c.SetRunning(ctx, ns, p.Name); err != nil && !apierrors.IsNotFound(err) {
		_ = cmd.Process.Kill()
		<-waited
		return fmt.Errorf("set running: %w", err)
	}
	select {
	case <-waited:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-waited
	}
	if k.Exited != nil {
		k.Exited(p, cmd.ProcessState)
	}
	if ctx.Err() != nil {
		return nil
	}
	code := int32(cmd.ProcessState.ExitCode())
	reason := "Completed"
	if code != 0 {
		reason = "Error"
	}
	if code < 0 { // killed by a signal
		code, reason = 137, "Error"
	}
	return ignoreNotFound(c.SetExited(ctx, ns, p.Name, code, reason))
}

// Environ turns a Pod's resolved environment into exec.Cmd.Env form,
// after the test process's own environment (PATH, HOME).
func Environ(env map[string]string) []string {
	out := os.Environ()
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}
