package main

// End-to-end tests of the Docker provider: the real `hodei server` with a
// --providers file starts hodei-agent containers (the image built from this
// tree, hodei-agent:test) on the machine's Docker engine. Every test has an
// owner id of its own, written to the server's data dir before it starts,
// and removes every container of that owner when it ends, pass or fail.
// Without an engine the tests skip, except under CI=true where they fail
// (dockertest.Driver); -short skips them.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	dockerclient "github.com/docker/docker/client"

	"github.com/hodei-jobs/hodei/api/jobpb"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/provider"
	"github.com/hodei-jobs/hodei/provider/docker"
	"github.com/hodei-jobs/hodei/provider/docker/dockertest"
)

// dockerE2EConfig is the one provider a Docker e2e server runs.
type dockerE2EConfig struct {
	max          int
	idle         time.Duration
	ephemeral    bool
	image        string // default: dockertest.AgentImage
	network      bool   // a user-defined network of the test's own
	startTimeout time.Duration
	backoffMin   time.Duration
	backoffMax   time.Duration
	deadPort     bool // agents dial a port nobody listens on
}

// dockerE2E is a `hodei server` with a Docker provider, its event stream,
// and the engine.
type dockerE2E struct {
	hodei   string
	srv     *e2eServer
	events  *e2eEvents
	drv     *docker.Driver
	cli     *dockerclient.Client
	owner   string
	data    string
	network string // id of the test's network, if any
}

// e2eRandHex returns n random bytes in hex.
func e2eRandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startDockerE2E starts a server whose provider "dk" runs agents as
// containers of a fresh owner.
func startDockerE2E(t *testing.T, cfg dockerE2EConfig) *dockerE2E {
	t.Helper()
	hodei, _ := e2eBinaries(t)
	drv := dockertest.Driver(t, docker.Config{})
	image := cfg.image
	if image == "" {
		image = dockertest.AgentImage(t)
	}
	cli, err := dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	e := &dockerE2E{hodei: hodei, drv: drv, cli: cli, data: t.TempDir(), owner: "test-e2e-" + e2eRandHex(6)}

	// Cleanups run last first: the server stops, then its containers go,
	// then the network.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gatewayNet := "bridge"
	if cfg.network {
		name := "hodei-e2e-" + e2eRandHex(4)
		created, err := cli.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge",
			Labels: map[string]string{"hodei.e2e": "true"}})
		if err != nil {
			t.Fatalf("docker network create %s: %v", name, err)
		}
		e.network, gatewayNet = created.ID, created.ID
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := cli.NetworkRemove(ctx, created.ID); err != nil {
				t.Errorf("docker network rm %s: %v", name, err)
			}
		})
	}
	gw, err := drv.Gateway(ctx, gatewayNet)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.data, provider.OwnerFile), []byte(e.owner+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if n, err := drv.RemoveAll(ctx, e.owner); err != nil {
			t.Errorf("RemoveAll(%s) = %d, %v", e.owner, n, err)
		}
		if left, err := drv.List(ctx, e.owner); err != nil || len(left) > 0 {
			t.Errorf("containers of %s left after cleanup: %v (%v)", e.owner, left, err)
		}
	})

	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	agentPort := port
	if cfg.deadPort {
		if agentPort, err = freePort(); err != nil {
			t.Fatal(err)
		}
	}
	entry := map[string]any{"name": "dk", "driver": "docker", "image": image, "max": cfg.max,
		"ephemeral": cfg.ephemeral, "server_address": net.JoinHostPort(gw.String(), strconv.Itoa(agentPort))}
	for k, d := range map[string]time.Duration{"idle_timeout": cfg.idle, "start_timeout": cfg.startTimeout,
		"backoff_min": cfg.backoffMin, "backoff_max": cfg.backoffMax} {
		if d > 0 {
			entry[k] = d.String()
		}
	}
	if cfg.network {
		entry["docker"] = map[string]any{"network": e.network}
	}
	b, err := json.Marshal(map[string]any{"providers": []any{entry}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "providers.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// Containers reach the server at the network's gateway, so it listens
	// on every address.
	e.srv = startE2EServer(t, hodei, "--data", e.data, "--listen", "0.0.0.0:"+strconv.Itoa(port), "--providers", file)
	e.srv.grpc = "127.0.0.1:" + strconv.Itoa(port)
	e.events = watchE2EEvents(t, e.srv)
	return e
}

// dockerPayload holds the payload fields of instance and job events the
// Docker tests read.
type dockerPayload struct {
	InstanceID string   `json:"instance_id"`
	Handle     string   `json:"handle"`
	WorkerID   string   `json:"worker_id"`
	Reason     string   `json:"reason"`
	Jobs       []string `json:"jobs"`
}

func payloadOf(t *testing.T, e e2eEvent) dockerPayload {
	t.Helper()
	var p dockerPayload
	if err := json.Unmarshal([]byte(e.GetPayloadJson()), &p); err != nil {
		t.Fatalf("event %d %s payload: %v", e.GetPosition(), e.GetType(), err)
	}
	return p
}

// instanceEvent waits for event typ of instance id.
func (e *dockerE2E) instanceEvent(t *testing.T, typ, id string) dockerPayload {
	t.Helper()
	return payloadOf(t, e.events.wait(t, typ, func(ev e2eEvent) bool { return ev.GetStream() == domain.InstanceStream(id) }))
}

// instanceOfWorker waits for the instance whose agent registered as
// worker and returns its id and container handle.
func (e *dockerE2E) instanceOfWorker(t *testing.T, worker string) (id, handle string) {
	t.Helper()
	c := e.events.wait(t, domain.TypeInstanceConnected, func(ev e2eEvent) bool { return ev.WorkerID == worker })
	id = payloadOf(t, c).InstanceID
	return id, e.instanceEvent(t, domain.TypeInstanceStarted, id).Handle
}

// jobEvents returns the events of job id's stream seen so far.
func (e *dockerE2E) jobEvents(id string) []e2eEvent {
	return slices.DeleteFunc(e.events.all(), func(ev e2eEvent) bool { return ev.GetStream() != domain.JobStream(id) })
}

// succeeded waits for job id to succeed (any attempt).
func (e *dockerE2E) succeeded(t *testing.T, id string) e2eEvent {
	t.Helper()
	return e.events.wait(t, domain.TypeJobSucceeded, func(ev e2eEvent) bool { return ev.JobID == id })
}

// logs returns the log of job id's attempt.
func (e *dockerE2E) logs(t *testing.T, id string, attempt uint32) string {
	t.Helper()
	return hodeiCLI(t, e.hodei, e.srv, "job", "logs", id, "--attempt", strconv.Itoa(int(attempt)))
}

// waitNoContainers waits until the owner has no container left.
func (e *dockerE2E) waitNoContainers(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := e.drv.List(ctx, e.owner)
		cancel()
		if err != nil {
			t.Fatalf("docker list: %v", err)
		}
		if len(got) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d container(s) of %s still there after %s: %+v", len(got), e.owner, within, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// submitMany submits n jobs running script in one call and returns their
// ids.
func (e *dockerE2E) submitMany(t *testing.T, n int, name, script string) []string {
	t.Helper()
	req := &jobpb.SubmitJobsRequest{}
	for i := range n {
		req.Jobs = append(req.Jobs, &jobpb.SubmitJob{Spec: &jobpb.JobSpec{Name: fmt.Sprintf("%s-%d", name, i),
			Script: script, MaxAttempts: 3}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	res, err := e.events.client.SubmitJobs(ctx, req)
	if err != nil {
		t.Fatalf("SubmitJobs(%d) = %v", n, err)
	}
	ids := make([]string, len(res.GetResults()))
	for i, r := range res.GetResults() {
		ids[i] = r.GetJob().GetId()
	}
	return ids
}

// liveInLog returns the most instances alive at once at any position of
// the log: requested and not yet failed or terminated.
func liveInLog(events []e2eEvent) int {
	live, peak := map[string]bool{}, 0
	for _, ev := range events {
		switch ev.GetType() {
		case domain.TypeInstanceRequested:
			live[ev.GetStream()] = true
			peak = max(peak, len(live))
		case domain.TypeInstanceFailed, domain.TypeInstanceTerminated:
			delete(live, ev.GetStream())
		}
	}
	return peak
}

// TestE2EDockerColdJob submits a job with no agent anywhere: the provider
// starts a container, the job runs in it (its output shows the
// container's host name), the idle agent is drained and its container
// removed, and the instance's timeline explains every step.
func TestE2EDockerColdJob(t *testing.T) {
	e := startDockerE2E(t, dockerE2EConfig{max: 1, idle: 2 * time.Second})
	t0 := time.Now()
	id := submitE2EJob(t, e.hodei, e.srv, "docker-cold", `echo "running on $(hostname)"`)
	started := e.events.ofJob(t, domain.TypeJobStarted, id, 1)
	inst, handle := e.instanceOfWorker(t, started.WorkerID)
	e.succeeded(t, id)
	t.Logf("submit to job.succeeded: %s", time.Since(t0).Round(time.Millisecond))
	if got, want := e.logs(t, id, 1), "running on "+docker.Hostname(inst)+"\r\n"; got != want {
		t.Errorf("job log = %q, want %q", got, want)
	}
	if handle == "" {
		t.Error("instance.started has no container handle")
	}
	term := e.instanceEvent(t, domain.TypeInstanceTerminated, inst)
	t.Logf("instance %s terminated %s after the submit: %s", inst, time.Since(t0).Round(time.Millisecond), term.Reason)
	e.waitNoContainers(t, 5*time.Second)

	// The timeline, read from the stopped server's data dir.
	e.srv.signal(t, syscall.SIGTERM)
	select {
	case <-e.srv.exited:
	case <-time.After(e2eWait):
		t.Fatal("hodei server still running after SIGTERM")
	}
	cmd := exec.Command(e.hodei, "replay", "timeline", "--data", e.data, "--instance", inst, "-o", "json")
	cmd.Env = e2eEnv()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hodei replay timeline --instance %s: %v", inst, err)
	}
	var tl struct {
		Events []struct {
			Type    string        `json:"type"`
			Summary string        `json:"summary"`
			Payload dockerPayload `json:"payload"`
		} `json:"events"`
	}
	if err := json.Unmarshal(out, &tl); err != nil {
		t.Fatalf("timeline JSON %q: %v", out, err)
	}
	var types []string
	for _, ev := range tl.Events {
		types = append(types, ev.Type)
		t.Logf("timeline: %s: %s", ev.Type, ev.Summary)
	}
	want := []string{domain.TypeInstanceRequested, domain.TypeInstanceStarted, domain.TypeInstanceConnected, domain.TypeInstanceTerminated}
	if !slices.Equal(types, want) {
		t.Fatalf("instance timeline = %v, want %v", types, want)
	}
	if r := tl.Events[0].Payload; !strings.Contains(r.Reason, id) || !slices.Contains(r.Jobs, id) {
		t.Errorf("instance.requested reason %q (jobs %v) does not name job %s", r.Reason, r.Jobs, id)
	}
	if tl.Events[1].Payload.Handle != handle {
		t.Errorf("instance.started handle = %q, want %q", tl.Events[1].Payload.Handle, handle)
	}
	if tl.Events[2].Payload.WorkerID != started.WorkerID {
		t.Errorf("instance.connected worker = %q, want %q", tl.Events[2].Payload.WorkerID, started.WorkerID)
	}
	if r := tl.Events[3].Payload.Reason; !strings.Contains(r, "idle for 2s") {
		t.Errorf("instance.terminated reason = %q, want it to say the agent was idle for 2s", r)
	}
}

// TestE2EDockerMaxContainers runs 20 short jobs with at most 4 containers:
// all succeed, and neither the engine (polled every 100ms) nor the log
// ever holds more than 4.
func TestE2EDockerMaxContainers(t *testing.T) {
	const jobs, maxInstances = 20, 4
	e := startDockerE2E(t, dockerE2EConfig{max: maxInstances, idle: time.Second})
	var (
		mu      sync.Mutex
		peak    int
		pollErr error
	)
	ctx, stop := context.WithCancel(context.Background())
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			got, err := e.drv.List(ctx, e.owner)
			mu.Lock()
			if err != nil && ctx.Err() == nil {
				pollErr = err
			}
			peak = max(peak, len(got))
			mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { stop(); <-polled }()

	t0 := time.Now()
	ids := e.submitMany(t, jobs, "docker-max", `sleep 0.5; echo "on $(hostname)"`)
	hosts := map[string]int{}
	for _, id := range ids {
		ev := e.succeeded(t, id)
		out := e.logs(t, id, ev.Attempt)
		host, ok := strings.CutPrefix(strings.TrimSpace(out), "on ")
		if !ok || !strings.HasPrefix(host, "hodei-dk-") {
			t.Errorf("job %s log = %q, want \"on hodei-dk-...\"", id, out)
		}
		hosts[host]++
	}
	elapsed := time.Since(t0)
	stop()
	<-polled
	mu.Lock()
	defer mu.Unlock()
	if pollErr != nil {
		t.Fatalf("docker list: %v", pollErr)
	}
	inLog := liveInLog(e.events.all())
	t.Logf("%d jobs in %s on %d containers %v; peak %d containers on the engine, %d instances live in the log",
		jobs, elapsed.Round(time.Millisecond), len(hosts), hosts, peak, inLog)
	if peak > maxInstances || inLog > maxInstances {
		t.Errorf("peak containers %d, peak live instances in the log %d: want at most %d", peak, inLog, maxInstances)
	}
	if len(hosts) > maxInstances*2 || len(hosts) < 2 {
		t.Errorf("jobs ran on %d containers, want 2..%d (20 jobs of 0.5s should scale out)", len(hosts), maxInstances*2)
	}
}

// TestE2EDockerKilledContainer kills the container under a running job:
// the job is re-queued and attempt 2 succeeds in another container.
func TestE2EDockerKilledContainer(t *testing.T) {
	e := startDockerE2E(t, dockerE2EConfig{max: 2, idle: 2 * time.Second})
	id := submitE2EJob(t, e.hodei, e.srv, "docker-kill", `echo "attempt $HODEI_JOB_ATTEMPT on $(hostname)"
if [ "$HODEI_JOB_ATTEMPT" = 1 ]; then sleep 60; fi
echo "attempt $HODEI_JOB_ATTEMPT done"`)
	w1 := e.events.ofJob(t, domain.TypeJobStarted, id, 1).WorkerID
	inst1, handle1 := e.instanceOfWorker(t, w1)
	e.events.waitLog(t, id, 1, "attempt 1 on")

	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	t0 := time.Now()
	if err := e.cli.ContainerKill(ctx, handle1, "KILL"); err != nil {
		t.Fatalf("docker kill %s: %v", handle1, err)
	}
	requeued := e.events.ofJob(t, domain.TypeJobRequeued, id, 1)
	t.Logf("container killed: job.requeued after %s: %s", sinceKill(requeued, t0).Round(time.Millisecond), payloadOf(t, requeued).Reason)
	w2 := e.events.ofJob(t, domain.TypeJobStarted, id, 2).WorkerID
	inst2, _ := e.instanceOfWorker(t, w2)
	if inst2 == inst1 || w2 == w1 {
		t.Fatalf("attempt 2 ran on instance %s (worker %s), the killed one", inst2, w2)
	}
	e.events.ofJob(t, domain.TypeJobSucceeded, id, 2)
	t.Logf("attempt 2 succeeded %s after the kill", time.Since(t0).Round(time.Millisecond))
	want := fmt.Sprintf("attempt 2 on %s\r\nattempt 2 done\r\n", docker.Hostname(inst2))
	if got := e.logs(t, id, 2); got != want {
		t.Errorf("attempt 2 log = %q, want %q", got, want)
	}
	term := e.instanceEvent(t, domain.TypeInstanceTerminated, inst1)
	t.Logf("killed instance %s: %s", inst1, term.Reason)
	if !strings.Contains(term.Reason, "exited with code 137") {
		t.Errorf("killed instance terminated with %q, want the exit code 137 in it", term.Reason)
	}
}

// TestE2EDockerPartitionIsFenced disconnects the container running a job
// from its network for longer than the lease: the worker is lost, the job
// re-queued and finished by another container. Reconnected, the first
// agent's attempt is fenced: the job has one job.succeeded, attempt 1's
// log does not grow, and nothing runs a third time.
func TestE2EDockerPartitionIsFenced(t *testing.T) {
	e := startDockerE2E(t, dockerE2EConfig{max: 2, idle: 3 * time.Second, network: true})
	id := submitE2EJob(t, e.hodei, e.srv, "docker-partition", `echo "attempt $HODEI_JOB_ATTEMPT on $(hostname)"
if [ "$HODEI_JOB_ATTEMPT" = 1 ]; then
  i=0
  while :; do i=$((i+1)); echo "stale attempt 1 line $i"; sleep 0.05; done
fi
echo "attempt $HODEI_JOB_ATTEMPT done"`)
	w1 := e.events.ofJob(t, domain.TypeJobStarted, id, 1).WorkerID
	inst1, handle1 := e.instanceOfWorker(t, w1)
	e.events.waitLog(t, id, 1, "stale attempt 1 line 2")

	ctx, cancel := context.WithTimeout(context.Background(), 2*e2eWait)
	defer cancel()
	t0 := time.Now()
	if err := e.cli.NetworkDisconnect(ctx, e.network, handle1, true); err != nil {
		t.Fatalf("docker network disconnect %s: %v", handle1, err)
	}
	lost := e.events.wait(t, domain.TypeWorkerLost, func(ev e2eEvent) bool { return ev.WorkerID == w1 })
	requeued := e.events.ofJob(t, domain.TypeJobRequeued, id, 1)
	t.Logf("container disconnected: worker.lost after %s, job.requeued after %s",
		sinceKill(lost, t0).Round(time.Millisecond), sinceKill(requeued, t0).Round(time.Millisecond))
	w2 := e.events.ofJob(t, domain.TypeJobStarted, id, 2).WorkerID
	inst2, _ := e.instanceOfWorker(t, w2)
	if inst2 == inst1 {
		t.Fatalf("attempt 2 ran on the partitioned instance %s", inst2)
	}
	done := e.events.ofJob(t, domain.TypeJobSucceeded, id, 2)
	t.Logf("attempt 2 succeeded on %s %s after the disconnect", inst2, sinceKill(done, t0).Round(time.Millisecond))
	// Stay partitioned well past the lease (3 heartbeats).
	if d := 3*time.Second - time.Since(t0); d > 0 {
		time.Sleep(d)
	}
	stale := e.logs(t, id, 1)

	t1 := time.Now()
	if err := e.cli.NetworkConnect(ctx, e.network, handle1, nil); err != nil {
		t.Fatalf("docker network connect %s: %v", handle1, err)
	}
	// The agent reconnects, reports its attempt and is told it is fenced.
	agentLog := waitContainerLog(ctx, t, e.cli, handle1, "attempt fenced")
	t.Logf("container reconnected: its agent fenced attempt 1 after %s", time.Since(t1).Round(time.Millisecond))
	if testing.Verbose() {
		for _, l := range strings.Split(agentLog, "\n") {
			if i := strings.Index(l, "time="); i >= 0 && (strings.Contains(l, "fenced") || strings.Contains(l, "connect")) {
				t.Logf("agent: %s", l[i:]) // past the stream's frame header
			}
		}
	}
	// Let whatever the fenced agent might still send arrive.
	time.Sleep(time.Second)

	if got := e.logs(t, id, 1); got != stale {
		t.Errorf("attempt 1's log changed after the reconnect: %d bytes, then %d", len(stale), len(got))
	}
	want := fmt.Sprintf("attempt 2 on %s\r\nattempt 2 done\r\n", docker.Hostname(inst2))
	if got := e.logs(t, id, 2); got != want {
		t.Errorf("attempt 2 log = %q, want %q", got, want)
	}
	var terminal, startedAttempts []string
	for _, ev := range e.jobEvents(id) {
		switch ev.GetType() {
		case domain.TypeJobSucceeded, domain.TypeJobFailed, domain.TypeJobCancelled, domain.TypeJobTimedOut:
			terminal = append(terminal, fmt.Sprintf("%s/%d", ev.GetType(), ev.Attempt))
		case domain.TypeJobStarted:
			startedAttempts = append(startedAttempts, strconv.Itoa(int(ev.Attempt)))
		}
		if ev.GetPosition() > requeued.GetPosition() && ev.GetActor() == "agent:"+w1 {
			t.Errorf("late report of the fenced agent recorded: %d %s", ev.GetPosition(), ev.GetType())
		}
	}
	if want := []string{domain.TypeJobSucceeded + "/2"}; !slices.Equal(terminal, want) {
		t.Errorf("terminal job events = %v, want %v", terminal, want)
	}
	if want := []string{"1", "2"}; !slices.Equal(startedAttempts, want) {
		t.Errorf("job.started attempts = %v, want %v", startedAttempts, want)
	}
	// The reconnected agent is idle now: it is drained and its container
	// removed like any other.
	term := e.instanceEvent(t, domain.TypeInstanceTerminated, inst1)
	t.Logf("partitioned instance %s: %s", inst1, term.Reason)
}

// waitContainerLog follows a container's output (the agent's log) until it
// holds want.
func waitContainerLog(ctx context.Context, t *testing.T, cli *dockerclient.Client, handle, want string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, e2eWait)
	defer cancel()
	rc, err := cli.ContainerLogs(ctx, handle, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if err != nil {
		t.Fatalf("docker logs %s: %v", handle, err)
	}
	defer rc.Close()
	var got bytes.Buffer
	buf := make([]byte, 32<<10)
	for !bytes.Contains(got.Bytes(), []byte(want)) {
		n, err := rc.Read(buf)
		got.Write(buf[:n])
		if err != nil && !bytes.Contains(got.Bytes(), []byte(want)) {
			t.Fatalf("container %s log has no %q (%v); got:\n%s", handle, want, err, got.String())
		}
	}
	return got.String()
}

// TestE2EDockerMissingImage points the provider at an image the engine
// does not have: the job is parked with a reason naming the image, the
// provider retries with backoff (a bounded number of instance.failed), and
// cancelling the job leaves no container.
func TestE2EDockerMissingImage(t *testing.T) {
	image := "hodei-agent:missing-" + e2eRandHex(4)
	const backoffMin, backoffMax = 200 * time.Millisecond, time.Second
	e := startDockerE2E(t, dockerE2EConfig{max: 1, image: image, backoffMin: backoffMin, backoffMax: backoffMax})
	id := submitE2EJob(t, e.hodei, e.srv, "docker-missing", "echo never")
	parked := e.events.wait(t, domain.TypeJobParked, func(ev e2eEvent) bool {
		return ev.JobID == id && strings.Contains(payloadOf(t, ev).Reason, image)
	})
	t.Logf("job parked: %s", payloadOf(t, parked).Reason)
	first := e.events.wait(t, domain.TypeInstanceFailed, nil)
	t.Logf("instance failed: %s", payloadOf(t, first).Reason)
	if r := payloadOf(t, first).Reason; !strings.Contains(r, image) {
		t.Errorf("instance.failed reason %q does not name the image %s", r, image)
	}
	const window = 4 * time.Second
	time.Sleep(window)
	var at []time.Time
	for _, ev := range e.events.all() {
		if ev.GetType() == domain.TypeInstanceFailed && ev.GetPosition() >= first.GetPosition() &&
			ev.GetTime().AsTime().Sub(first.GetTime().AsTime()) <= window {
			at = append(at, ev.GetTime().AsTime())
		}
	}
	var gaps []string
	for i := 1; i < len(at); i++ {
		gaps = append(gaps, at[i].Sub(at[i-1]).Round(10*time.Millisecond).String())
	}
	t.Logf("%d instance.failed in %s, gaps %v (backoff %s..%s)", len(at), window, gaps, backoffMin, backoffMax)
	// 200ms, 400ms, 800ms, then 1s: about 6 in 4s; a retry every
	// reconcile (200ms) would be 20.
	if len(at) < 2 || len(at) > 9 {
		t.Errorf("%d failed starts in %s, want 2..9 (backing off from %s to %s)", len(at), window, backoffMin, backoffMax)
	}
	if n := len(at); n >= 3 {
		if last := at[n-1].Sub(at[n-2]); last < backoffMax*3/4 {
			t.Errorf("last retry gap %s, want about the %s backoff maximum", last, backoffMax)
		}
	}
	if st := payloadOf(t, parked).Reason; !strings.Contains(st, "retrying in") {
		t.Errorf("park reason %q does not say when it retries", st)
	}

	hodeiCLI(t, e.hodei, e.srv, "job", "cancel", id)
	cancelled := e.events.wait(t, domain.TypeJobCancelled, func(ev e2eEvent) bool { return ev.JobID == id })
	time.Sleep(backoffMax + 500*time.Millisecond)
	for _, ev := range e.events.all() {
		if ev.GetType() == domain.TypeInstanceRequested && ev.GetPosition() > cancelled.GetPosition() {
			t.Errorf("instance requested after the only job was cancelled: %s", payloadOf(t, ev).Reason)
		}
	}
	e.waitNoContainers(t, 0)
}

// TestE2EDockerCancelBeforeConnect cancels a job whose container runs but
// whose agent has not connected (it dials a port nobody listens on): the
// provider removes the container and says why.
func TestE2EDockerCancelBeforeConnect(t *testing.T) {
	e := startDockerE2E(t, dockerE2EConfig{max: 1, deadPort: true, startTimeout: time.Minute})
	id := submitE2EJob(t, e.hodei, e.srv, "docker-cancel", "echo never")
	req := e.events.wait(t, domain.TypeInstanceRequested, nil)
	inst := payloadOf(t, req).InstanceID
	e.instanceEvent(t, domain.TypeInstanceStarted, inst)
	t0 := time.Now()
	hodeiCLI(t, e.hodei, e.srv, "job", "cancel", id)
	term := e.instanceEvent(t, domain.TypeInstanceTerminated, inst)
	t.Logf("job cancelled: instance %s terminated after %s: %s", inst, time.Since(t0).Round(time.Millisecond), term.Reason)
	if !strings.Contains(term.Reason, id) {
		t.Errorf("instance.terminated reason %q does not name the cancelled job %s", term.Reason, id)
	}
	e.waitNoContainers(t, 0)
}

// TestE2EDockerEphemeral runs 3 jobs with ephemeral agents: each runs in
// a container of its own, which leaves after its one job.
func TestE2EDockerEphemeral(t *testing.T) {
	e := startDockerE2E(t, dockerE2EConfig{max: 2, ephemeral: true, idle: 10 * time.Second})
	ids := e.submitMany(t, 3, "docker-ephemeral", `echo "on $(hostname)"; sleep 0.2`)
	hosts, workers := map[string]string{}, map[string]string{}
	for _, id := range ids {
		ev := e.succeeded(t, id)
		out := strings.TrimSpace(e.logs(t, id, ev.Attempt))
		host, _ := strings.CutPrefix(out, "on ")
		if prev, dup := hosts[host]; dup {
			t.Errorf("jobs %s and %s both ran on %s", prev, id, host)
		}
		hosts[host] = id
		if prev, dup := workers[ev.WorkerID]; dup {
			t.Errorf("jobs %s and %s both ran on worker %s", prev, id, ev.WorkerID)
		}
		workers[ev.WorkerID] = id
		inst, _ := e.instanceOfWorker(t, ev.WorkerID)
		if want := docker.Hostname(inst); host != want {
			t.Errorf("job %s ran on %q, want %q (its instance)", id, host, want)
		}
		term := e.instanceEvent(t, domain.TypeInstanceTerminated, inst)
		if !strings.Contains(term.Reason, "ephemeral") {
			t.Errorf("instance %s terminated with %q, want the ephemeral reason", inst, term.Reason)
		}
	}
	// Every started attempt ran on a worker of its own.
	started := map[string]int{}
	for _, ev := range e.events.all() {
		if ev.GetType() == domain.TypeJobStarted {
			started[ev.WorkerID]++
		}
	}
	for w, n := range started {
		if n > 1 {
			t.Errorf("worker %s started %d attempts, want 1 (ephemeral)", w, n)
		}
	}
	t.Logf("3 ephemeral jobs ran on %v", slices.Sorted(maps.Keys(hosts)))
	e.waitNoContainers(t, 5*time.Second)
}

// TestE2EBenchProvision runs `hodei bench provision --runs 2 -o json` with
// the test agent image and checks its JSON fields (not the figures:
// benchmarks measure, they do not assert) and that it left no container.
func TestE2EBenchProvision(t *testing.T) {
	hodei, _ := e2eBinaries(t)
	drv := dockertest.Driver(t, docker.Config{})
	image := dockertest.AgentImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, hodei, "bench", "provision", "--runs", "2", "-o", "json", "--image", image, "--timeout", "90s")
	cmd.Env = e2eEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hodei bench provision: %v\n%s", err, stderr.String())
	}
	var res map[string]any
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("hodei bench provision -o json printed %q: %v", out, err)
	}
	for _, f := range []string{"p50_ms", "p99_ms", "min_ms", "max_ms", "mean_ms", "container_start_ms"} {
		if v, ok := res[f].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", f, res[f])
		}
	}
	if res["runs"] != float64(2) {
		t.Errorf("runs = %v, want 2", res["runs"])
	}
	t.Logf("hodei bench provision: %s", bytes.TrimSpace(out))
	left, err := drv.RemoveLabeled(ctx, map[string]string{provider.LabelProvider: "bench"})
	if err != nil || left > 0 {
		t.Errorf("bench provision left %d container(s) behind (%v)", left, err)
	}
}
