package docker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hodei-jobs/hodei/provider"
)

// Kind is the driver's kind.
const Kind = "docker"

// Config configures a Driver.
type Config struct {
	// Host is the engine address ("unix:///var/run/docker.sock",
	// "tcp://host:2376"). Empty means DOCKER_HOST, else the default
	// socket. A tcp:// host uses TLS when DOCKER_CERT_PATH is set
	// (verified when DOCKER_TLS_VERIFY is); DOCKER_API_VERSION pins the
	// API version.
	Host string
	// Network is the Docker network containers join; empty means the
	// default bridge.
	Network string
	// ExtraHosts are "name:ip" entries added to each container's
	// /etc/hosts; "host.docker.internal:host-gateway" names the host.
	ExtraHosts []string
	// Logger receives a debug line per container started or removed;
	// nil discards.
	Logger *slog.Logger
}

// Driver starts agents as containers on one Docker engine. It is safe for
// concurrent use.
type Driver struct {
	eng *engine
	cfg Config
	log *slog.Logger
}

var _ provider.Driver = (*Driver)(nil)

// New returns a driver for the engine cfg names. It does not contact the
// engine: Ping does.
func New(cfg Config) (*Driver, error) {
	eng, err := newEngine(cfg.Host)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.ExtraHosts = slices.Clone(cfg.ExtraHosts)
	return &Driver{eng: eng, cfg: cfg, log: log}, nil
}

// Close releases the driver's idle connections to the engine.
func (d *Driver) Close() error {
	d.eng.close()
	return nil
}

// Kind returns "docker".
func (d *Driver) Kind() string { return Kind }

// Ping checks that the engine answers; its error wraps
// provider.ErrUnavailable when it does not.
func (d *Driver) Ping(ctx context.Context) error {
	if _, err := d.eng.ping(ctx); err != nil {
		return wrap("docker ping "+d.eng.host, err)
	}
	return nil
}

// CheckImage checks that image ref is in the engine (the driver never
// pulls). A missing image wraps provider.ErrImage, an unreachable engine
// provider.ErrUnavailable.
func (d *Driver) CheckImage(ctx context.Context, ref string) error {
	if ref == "" {
		return errors.New("docker image inspect: image is empty")
	}
	err := d.eng.inspectImage(ctx, ref)
	if isNotFound(err) {
		return fmt.Errorf("%w: image %s not found in the local engine: build it with `make image`",
			provider.ErrImage, ref)
	}
	if err != nil {
		return wrap("docker image inspect "+ref, err)
	}
	return nil
}

// Gateway returns the IPv4 gateway of a Docker network (a name or id,
// "bridge" for the default one): the address at which its containers reach
// the host. The default bridge often lists only its subnet; its gateway is
// then the subnet's first address.
func (d *Driver) Gateway(ctx context.Context, network string) (netip.Addr, error) {
	if network == "" {
		return netip.Addr{}, errors.New("docker network inspect: network is empty")
	}
	nw, err := d.eng.inspectNetwork(ctx, network)
	if err != nil {
		return netip.Addr{}, wrap("docker network inspect "+network, err)
	}
	for _, c := range nw.IPAM.Config {
		if a, err := netip.ParseAddr(c.Gateway); err == nil && a.Is4() {
			return a, nil
		}
	}
	for _, c := range nw.IPAM.Config {
		if p, err := netip.ParsePrefix(c.Subnet); err == nil && p.Addr().Is4() {
			return p.Masked().Addr().Next(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("docker network %s has no IPv4 gateway or subnet", network)
}

// ContainerName is the name of instance id's container.
func ContainerName(instanceID string) string { return "hodei-agent-" + instanceID }

// Hostname is the host name inside instance id's container, which job
// output and the agent's default name show.
func Hostname(instanceID string) string { return "hodei-" + instanceID }

// Start creates and starts the container for req and returns its id. On
// error nothing is left: a missing image wraps provider.ErrImage, an
// unreachable engine provider.ErrUnavailable, invalid req fields name the
// field.
func (d *Driver) Start(ctx context.Context, req provider.StartRequest) (string, error) {
	if err := validate(req); err != nil {
		return "", err
	}
	name := ContainerName(req.InstanceID)
	mem := int64(req.MemoryBytes)
	cfg := createRequest{
		Hostname: Hostname(req.InstanceID),
		Image:    req.Image,
		Env:      environ(req),
		Labels:   labels(req),
		HostConfig: hostConfig{
			NetworkMode: d.cfg.Network,
			ExtraHosts:  d.cfg.ExtraHosts,
			// The Manager removes containers itself, after reading how the
			// agent ended; a restarted agent would also reuse a spent token.
			AutoRemove:    false,
			RestartPolicy: restartPolicy{Name: "no"},
			NanoCPUs:      int64(req.CPUMillis) * 1_000_000,
			Memory:        mem,
		},
	}
	if mem > 0 {
		cfg.HostConfig.MemorySwap = mem // no swap: the limit is the memory offered
	}
	created, err := d.eng.createContainer(ctx, name, cfg)
	if err != nil {
		if ctx.Err() != nil {
			// The engine may have created it after we stopped listening.
			d.cleanup(ctx, name)
		}
		if isNotFound(err) {
			// No such image, or no such network: only the first is ErrImage.
			if ierr := d.CheckImage(ctx, req.Image); errors.Is(ierr, provider.ErrImage) {
				return "", ierr
			}
		}
		return "", wrap("docker create "+name, err)
	}
	for _, w := range created.Warnings {
		d.log.Warn("docker create", "container", name, "warning", w)
	}
	if err := d.eng.startContainer(ctx, created.ID); err != nil {
		d.cleanup(ctx, created.ID)
		return "", wrap("docker start "+name, err)
	}
	d.log.Debug("docker container started", "container", name, "id", created.ID, "image", req.Image)
	return created.ID, nil
}

// cleanup force-removes what a failed Start created, on a context of its
// own so that a cancelled Start still leaves nothing behind.
func (d *Driver) cleanup(ctx context.Context, ref string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := d.Remove(ctx, ref); err != nil {
		d.log.Warn("docker remove after failed start", "container", ref, "err", err)
	}
}

// Remove force-removes the container handle (an id or name) and its
// anonymous volumes. A container that is already gone is not an error.
func (d *Driver) Remove(ctx context.Context, handle string) error {
	if handle == "" {
		return errors.New("docker remove: handle is empty")
	}
	err := d.eng.removeContainer(ctx, handle)
	if err != nil && !isNotFound(err) {
		return wrap("docker remove "+handle, err)
	}
	d.log.Debug("docker container removed", "container", handle)
	return nil
}

// List returns the containers of owner in any state, oldest first.
// Exited ones carry "exited with code N" in Reason, with " (OOMKilled)"
// when the kernel killed the agent for memory.
func (d *Driver) List(ctx context.Context, owner string) ([]provider.Instance, error) {
	if owner == "" {
		return nil, errors.New("docker list: owner is empty")
	}
	cs, err := d.list(ctx, map[string]string{provider.LabelOwner: owner})
	if err != nil {
		return nil, err
	}
	out := make([]provider.Instance, 0, len(cs))
	for _, c := range cs {
		in := provider.Instance{
			InstanceID: c.Labels[provider.LabelInstance],
			Handle:     c.ID,
			Created:    time.Unix(c.Created, 0),
		}
		switch c.State {
		case "created":
			in.Phase, in.Reason = provider.PhasePending, "created"
		case "restarting":
			in.Phase, in.Reason = provider.PhasePending, "restarting"
		case "running":
			in.Phase = provider.PhaseRunning
		case "paused":
			in.Phase, in.Reason = provider.PhaseRunning, "paused"
		default: // exited, dead, removing
			in.Phase = provider.PhaseExited
			info, err := d.eng.inspectContainer(ctx, c.ID)
			if isNotFound(err) {
				continue // removed since the listing
			}
			if err != nil {
				return nil, wrap("docker inspect "+c.ID, err)
			}
			in.Reason = exitReason(info.State)
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b provider.Instance) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.InstanceID, b.InstanceID))
	})
	return out, nil
}

// exitReason words how a container ended.
func exitReason(st *containerState) string {
	if st == nil {
		return "exited"
	}
	r := fmt.Sprintf("exited with code %d", st.ExitCode)
	if st.OOMKilled {
		r += " (OOMKilled)"
	}
	if st.Error != "" {
		r += ": " + st.Error
	}
	return r
}

// RemoveAll force-removes every container Hodei manages for owner, in any
// state, and returns how many it removed. It keeps going past failures
// and returns them joined.
func (d *Driver) RemoveAll(ctx context.Context, owner string) (int, error) {
	if owner == "" {
		return 0, errors.New("docker remove all: owner is empty")
	}
	return d.RemoveLabeled(ctx, map[string]string{provider.LabelOwner: owner})
}

// RemoveLabeled force-removes every container Hodei manages (of any
// owner) that carries all of labels, and returns how many it removed. With
// no labels it removes every managed container on the engine: tests sweep
// with a label of their own, operators after wiping a server.
func (d *Driver) RemoveLabeled(ctx context.Context, labels map[string]string) (int, error) {
	cs, err := d.list(ctx, labels)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, c := range cs {
		if err := d.Remove(ctx, c.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// list returns the managed containers carrying all of labels.
func (d *Driver) list(ctx context.Context, labels map[string]string) ([]containerSummary, error) {
	filter := []string{provider.LabelManaged + "=true"}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		filter = append(filter, k+"="+labels[k])
	}
	cs, err := d.eng.listContainers(ctx, filter)
	if err != nil {
		return nil, wrap("docker list", err)
	}
	return cs, nil
}

// wrap names op and marks transport failures as provider.ErrUnavailable.
func wrap(op string, err error) error {
	var ce *connError
	if errors.As(err, &ce) {
		return fmt.Errorf("%s: %w: %w", op, provider.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// reserved are the labels Start sets itself.
var reserved = []string{provider.LabelManaged, provider.LabelOwner, provider.LabelInstance, provider.LabelProvider}

// validate checks req before anything is created.
func validate(req provider.StartRequest) error {
	id := req.InstanceID
	if id == "" || len(id) > 40 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" ||
		id[0] == '-' {
		return fmt.Errorf("docker start: InstanceID %q: want 1-40 of [a-z0-9-], not starting with '-'", id)
	}
	if req.Owner == "" {
		return fmt.Errorf("docker start %s: Owner is empty", id)
	}
	if req.Image == "" {
		return fmt.Errorf("docker start %s: Image is empty", id)
	}
	if req.CPUMillis > math.MaxInt64/1_000_000 {
		return fmt.Errorf("docker start %s: CPUMillis %d is too large", id, req.CPUMillis)
	}
	if req.MemoryBytes > math.MaxInt64 {
		return fmt.Errorf("docker start %s: MemoryBytes %d is too large", id, req.MemoryBytes)
	}
	for _, env := range []map[string]string{req.Env, req.SecretEnv} {
		for k := range env {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				return fmt.Errorf("docker start %s: environment variable name %q is invalid", id, k)
			}
		}
	}
	for k := range req.SecretEnv {
		if _, ok := req.Env[k]; ok {
			return fmt.Errorf("docker start %s: %s is in both Env and SecretEnv", id, k)
		}
	}
	for _, k := range reserved {
		if _, ok := req.Labels[k]; ok {
			return fmt.Errorf("docker start %s: Labels: %s is set by the driver", id, k)
		}
	}
	return nil
}

// environ is req's environment as sorted KEY=value pairs.
func environ(req provider.StartRequest) []string {
	env := make([]string, 0, len(req.Env)+len(req.SecretEnv))
	for _, m := range []map[string]string{req.Env, req.SecretEnv} {
		for k, v := range m {
			env = append(env, k+"="+v)
		}
	}
	slices.Sort(env)
	return env
}

// labels is req's labels plus the four the driver owns.
func labels(req provider.StartRequest) map[string]string {
	l := maps.Clone(req.Labels)
	if l == nil {
		l = make(map[string]string, len(reserved))
	}
	l[provider.LabelManaged] = "true"
	l[provider.LabelOwner] = req.Owner
	l[provider.LabelInstance] = req.InstanceID
	l[provider.LabelProvider] = req.Provider
	return l
}
