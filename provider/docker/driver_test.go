package docker_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/google/go-cmp/cmp"

	"github.com/hodei-jobs/hodei/provider"
	"github.com/hodei-jobs/hodei/provider/docker"
	"github.com/hodei-jobs/hodei/provider/docker/dockertest"
)

// sweepLabel marks every container these tests start, so TestMain can
// remove what an earlier, killed run left behind.
const sweepLabel = "hodei.test"

const sweepValue = "provider-docker"

func TestMain(m *testing.M) {
	sweep()
	code := m.Run()
	sweep()
	os.Exit(code)
}

// sweep removes this package's leftovers; without an engine it does
// nothing (the tests themselves skip or fail).
func sweep() {
	d, err := docker.New(docker.Config{})
	if err != nil {
		return
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if n, err := d.RemoveLabeled(ctx, map[string]string{sweepLabel: sweepValue}); n > 0 || err != nil {
		fmt.Fprintf(os.Stderr, "swept %d leftover containers (err: %v)\n", n, err)
	}
}

// engine returns a raw client for inspecting what the driver did.
func engine(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

var instanceSeq = 0

// request is a StartRequest for an agent that dials a closed port and so
// keeps retrying: a running instance that never joins.
func request(t *testing.T, owner, image string) provider.StartRequest {
	t.Helper()
	instanceSeq++
	return provider.StartRequest{
		InstanceID: fmt.Sprintf("%s-%d", strings.TrimPrefix(owner, dockertest.OwnerPrefix), instanceSeq),
		Provider:   "local-docker",
		Owner:      owner,
		Image:      image,
		Env: map[string]string{
			"HODEI_SERVER":             "127.0.0.1:1",
			"HODEI_INSECURE_PLAINTEXT": "true",
			"HODEI_LABELS":             "pool=docker",
		},
		SecretEnv: map[string]string{"HODEI_TOKEN": "not-a-real-token"},
		Labels:    map[string]string{sweepLabel: sweepValue, "team": "ci"},
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestStartListRemove(t *testing.T) {
	d := dockertest.Driver(t, docker.Config{ExtraHosts: []string{"host.docker.internal:host-gateway"}})
	image := dockertest.AgentImage(t)
	owner := dockertest.Owner(t, d)
	ctx := ctxFor(t)
	cli := engine(t)

	req := request(t, owner, image)
	req.CPUMillis = 500
	req.MemoryBytes = 64 << 20
	handle, err := d.Start(ctx, req)
	if err != nil {
		t.Fatalf("Start() = %v", err)
	}

	info, err := cli.ContainerInspect(ctx, handle)
	if err != nil {
		t.Fatalf("ContainerInspect(%s) = %v", handle, err)
	}
	if got, want := info.Name, "/"+docker.ContainerName(req.InstanceID); got != want {
		t.Errorf("container name = %q, want %q", got, want)
	}
	if got, want := info.Config.Hostname, "hodei-"+req.InstanceID; got != want {
		t.Errorf("hostname = %q, want %q", got, want)
	}
	wantLabels := map[string]string{
		provider.LabelManaged:  "true",
		provider.LabelOwner:    owner,
		provider.LabelInstance: req.InstanceID,
		provider.LabelProvider: "local-docker",
		sweepLabel:             sweepValue,
		"team":                 "ci",
	}
	if diff := cmp.Diff(wantLabels, info.Config.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	for _, kv := range []string{"HODEI_SERVER=127.0.0.1:1", "HODEI_TOKEN=not-a-real-token", "HODEI_LABELS=pool=docker", "HODEI_WORK_DIR=/work"} {
		if !slices.Contains(info.Config.Env, kv) {
			t.Errorf("env %v lacks %s", info.Config.Env, kv)
		}
	}
	if got, want := info.HostConfig.NanoCPUs, int64(500_000_000); got != want {
		t.Errorf("NanoCPUs = %d, want %d", got, want)
	}
	if got, want := info.HostConfig.Memory, int64(64<<20); got != want {
		t.Errorf("Memory = %d, want %d", got, want)
	}
	if info.HostConfig.AutoRemove {
		t.Errorf("AutoRemove = true, want false (the Manager reads exit codes)")
	}
	if !slices.Contains(info.HostConfig.ExtraHosts, "host.docker.internal:host-gateway") {
		t.Errorf("ExtraHosts = %v, want host.docker.internal:host-gateway", info.HostConfig.ExtraHosts)
	}

	got, err := d.List(ctx, owner)
	if err != nil {
		t.Fatalf("List() = %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("List() = %+v, want the one instance", got)
	}
	in := got[0]
	if in.InstanceID != req.InstanceID || in.Handle != handle || in.Phase != provider.PhaseRunning || in.Reason != "" {
		t.Errorf("List()[0] = %+v, want running instance %s with handle %s", in, req.InstanceID, handle)
	}
	if age := time.Since(in.Created); age < -time.Minute || age > 5*time.Minute {
		t.Errorf("List()[0].Created = %v, want about now", in.Created)
	}

	// Another owner sees none of it.
	other, err := d.List(ctx, owner+"-other")
	if err != nil || len(other) != 0 {
		t.Errorf("List(other owner) = %+v, %v, want nothing", other, err)
	}

	if err := d.Remove(ctx, handle); err != nil {
		t.Fatalf("Remove() = %v", err)
	}
	if got, err := d.List(ctx, owner); err != nil || len(got) != 0 {
		t.Errorf("List() after Remove = %+v, %v, want nothing", got, err)
	}
	if _, err := cli.ContainerInspect(ctx, handle); !cerrdefs.IsNotFound(err) {
		t.Errorf("ContainerInspect after Remove = %v, want not found", err)
	}
	if err := d.Remove(ctx, handle); err != nil {
		t.Errorf("Remove() of a removed container = %v, want nil", err)
	}
}

func TestListPhases(t *testing.T) {
	d := dockertest.Driver(t, docker.Config{})
	image := dockertest.AgentImage(t)
	owner := dockertest.Owner(t, d)
	ctx := ctxFor(t)
	cli := engine(t)

	running := request(t, owner, image)
	if _, err := d.Start(ctx, running); err != nil {
		t.Fatalf("Start(running) = %v", err)
	}
	// A malformed HODEI_SLOTS makes the agent exit 2 (usage) at once.
	exits := request(t, owner, image)
	exits.Env["HODEI_SLOTS"] = "many"
	h, err := d.Start(ctx, exits)
	if err != nil {
		t.Fatalf("Start(exits) = %v", err)
	}
	waitC, errC := cli.ContainerWait(ctx, h, container.WaitConditionNotRunning)
	select {
	case <-waitC:
	case err := <-errC:
		t.Fatalf("ContainerWait() = %v", err)
	}

	got, err := d.List(ctx, owner)
	if err != nil {
		t.Fatalf("List() = %v", err)
	}
	phases := map[string]string{}
	for _, in := range got {
		phases[in.InstanceID] = string(in.Phase) + " " + in.Reason
	}
	want := map[string]string{
		running.InstanceID: "running ",
		exits.InstanceID:   "exited exited with code 2",
	}
	if diff := cmp.Diff(want, phases); diff != "" {
		t.Errorf("List() phases (-want +got):\n%s", diff)
	}

	n, err := d.RemoveAll(ctx, owner)
	if err != nil || n != 2 {
		t.Errorf("RemoveAll() = %d, %v, want 2, nil", n, err)
	}
	if got, err := d.List(ctx, owner); err != nil || len(got) != 0 {
		t.Errorf("List() after RemoveAll = %+v, %v, want nothing", got, err)
	}
}

func TestStartMissingImage(t *testing.T) {
	d := dockertest.Driver(t, docker.Config{})
	owner := dockertest.Owner(t, d)
	ctx := ctxFor(t)

	req := request(t, owner, "hodei-agent:no-such-tag-"+owner)
	_, err := d.Start(ctx, req)
	if !errors.Is(err, provider.ErrImage) {
		t.Fatalf("Start() = %v, want ErrImage", err)
	}
	if !strings.Contains(err.Error(), "make image") || !strings.Contains(err.Error(), req.Image) {
		t.Errorf("Start() error %q should name the image and `make image`", err)
	}
	if got, err := d.List(ctx, owner); err != nil || len(got) != 0 {
		t.Errorf("List() = %+v, %v, want nothing left", got, err)
	}
}

func TestStartFailureLeavesNothing(t *testing.T) {
	d := dockertest.Driver(t, docker.Config{Network: "hodei-no-such-network"})
	image := dockertest.AgentImage(t)
	owner := dockertest.Owner(t, d)
	ctx := ctxFor(t)

	_, err := d.Start(ctx, request(t, owner, image))
	if err == nil || errors.Is(err, provider.ErrImage) || errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("Start() on a missing network = %v, want a plain error", err)
	}
	if got, err := d.List(ctx, owner); err != nil || len(got) != 0 {
		t.Errorf("List() = %+v, %v, want nothing left", got, err)
	}
}

func TestStartCancelledLeavesNothing(t *testing.T) {
	d := dockertest.Driver(t, docker.Config{})
	image := dockertest.AgentImage(t)
	owner := dockertest.Owner(t, d)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := d.Start(ctx, request(t, owner, image)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start(cancelled ctx) = %v, want context.Canceled", err)
	}
	if got, err := d.List(ctxFor(t), owner); err != nil || len(got) != 0 {
		t.Errorf("List() = %+v, %v, want nothing left", got, err)
	}
}

// TestUnavailable needs no engine: the socket does not exist.
func TestUnavailable(t *testing.T) {
	d, err := docker.New(docker.Config{Host: "unix://" + t.TempDir() + "/docker.sock"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := ctxFor(t)
	if err := d.Ping(ctx); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("Ping() = %v, want ErrUnavailable", err)
	}
	if _, err := d.Start(ctx, request(t, "test-unavailable", "hodei-agent:dev")); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("Start() = %v, want ErrUnavailable", err)
	}
	if _, err := d.List(ctx, "test-unavailable"); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("List() = %v, want ErrUnavailable", err)
	}
	if err := d.Remove(ctx, "abc"); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("Remove() = %v, want ErrUnavailable", err)
	}
	if err := d.CheckImage(ctx, "hodei-agent:dev"); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("CheckImage() = %v, want ErrUnavailable", err)
	}
	if _, err := d.Gateway(ctx, "bridge"); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("Gateway() = %v, want ErrUnavailable", err)
	}
}

func TestCheckImage(t *testing.T) {
	d := dockertest.Driver(t, docker.Config{})
	image := dockertest.AgentImage(t)
	ctx := ctxFor(t)
	if err := d.CheckImage(ctx, image); err != nil {
		t.Errorf("CheckImage(%s) = %v, want nil", image, err)
	}
	missing := "hodei-agent:no-such-tag-check"
	err := d.CheckImage(ctx, missing)
	if !errors.Is(err, provider.ErrImage) || !strings.Contains(err.Error(), missing) {
		t.Errorf("CheckImage(%s) = %v, want ErrImage naming it", missing, err)
	}
}

func TestGateway(t *testing.T) {
	d := dockertest.Driver(t, docker.Config{})
	ctx := ctxFor(t)
	cli := engine(t)
	nw, err := cli.NetworkInspect(ctx, "bridge", network.InspectOptions{})
	if err != nil {
		t.Fatalf("NetworkInspect(bridge) = %v", err)
	}
	gw, err := d.Gateway(ctx, "bridge")
	if err != nil || !gw.Is4() {
		t.Fatalf("Gateway(bridge) = %v, %v, want an IPv4 address", gw, err)
	}
	var subnets []string
	for _, c := range nw.IPAM.Config {
		if p, err := netip.ParsePrefix(c.Subnet); err == nil && p.Contains(gw) {
			subnets = append(subnets, c.Subnet)
		}
	}
	if len(subnets) == 0 {
		t.Errorf("Gateway(bridge) = %v, in none of the bridge's subnets %+v", gw, nw.IPAM.Config)
	}
	if _, err := d.Gateway(ctx, "hodei-no-such-network"); err == nil || errors.Is(err, provider.ErrUnavailable) ||
		!strings.Contains(err.Error(), "hodei-no-such-network") {
		t.Errorf("Gateway(missing network) = %v, want an error naming it", err)
	}
}

// TestStartInvalid needs no engine: requests are checked before any call.
func TestStartInvalid(t *testing.T) {
	d, err := docker.New(docker.Config{Host: "unix://" + t.TempDir() + "/docker.sock"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tests := []struct {
		name   string
		mutate func(*provider.StartRequest)
		want   string
	}{
		{"no id", func(r *provider.StartRequest) { r.InstanceID = "" }, "InstanceID"},
		{"upper case id", func(r *provider.StartRequest) { r.InstanceID = "Abc" }, "InstanceID"},
		{"long id", func(r *provider.StartRequest) { r.InstanceID = strings.Repeat("a", 41) }, "InstanceID"},
		{"leading dash", func(r *provider.StartRequest) { r.InstanceID = "-a" }, "InstanceID"},
		{"no owner", func(r *provider.StartRequest) { r.Owner = "" }, "Owner"},
		{"no image", func(r *provider.StartRequest) { r.Image = "" }, "Image"},
		{"huge cpu", func(r *provider.StartRequest) { r.CPUMillis = 1 << 62 }, "CPUMillis"},
		{"huge memory", func(r *provider.StartRequest) { r.MemoryBytes = 1 << 63 }, "MemoryBytes"},
		{"bad env name", func(r *provider.StartRequest) { r.Env["A=B"] = "x" }, `"A=B"`},
		{"env twice", func(r *provider.StartRequest) { r.Env["HODEI_TOKEN"] = "x" }, "both Env and SecretEnv"},
		{"reserved label", func(r *provider.StartRequest) { r.Labels[provider.LabelOwner] = "x" }, provider.LabelOwner},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := request(t, "test-invalid", "hodei-agent:dev")
			req.InstanceID = "abc-1"
			tt.mutate(&req)
			_, err := d.Start(t.Context(), req)
			if err == nil || errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start() = %v, want an error naming %s", err, tt.want)
			}
		})
	}
	if _, err := d.List(t.Context(), ""); err == nil {
		t.Errorf("List(\"\") = nil error, want one")
	}
	if _, err := d.RemoveAll(t.Context(), ""); err == nil {
		t.Errorf("RemoveAll(\"\") = nil error, want one")
	}
}

func TestExitReason(t *testing.T) {
	tests := []struct {
		state *docker.State
		want  string
	}{
		{nil, "exited"},
		{&docker.State{ExitCode: 0}, "exited with code 0"},
		{&docker.State{ExitCode: 137, OOMKilled: true}, "exited with code 137 (OOMKilled)"},
		{&docker.State{ExitCode: 127, Error: "exec: not found"}, "exited with code 127: exec: not found"},
	}
	for _, tt := range tests {
		if got := docker.ExitReason(tt.state); got != tt.want {
			t.Errorf("ExitReason(%+v) = %q, want %q", tt.state, got, tt.want)
		}
	}
}

func TestKind(t *testing.T) {
	d, err := docker.New(docker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := d.Kind(); got != "docker" {
		t.Errorf("Kind() = %q, want docker", got)
	}
}
