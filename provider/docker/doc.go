// Package docker is the provider.Driver for a Docker engine: each agent
// instance is one container, named hodei-agent-<instance id>, running the
// agent image (deploy/docker/agent.Dockerfile, built by `make image`).
//
// Invariants:
//
//   - Every container it creates carries provider.LabelManaged="true",
//     LabelOwner, LabelInstance and LabelProvider, so List and RemoveAll
//     find instances by label alone, also after a server crash. A
//     StartRequest may add labels but not override these four.
//   - Start leaves nothing behind on error: a container it created but
//     could not start is force-removed, even when ctx was cancelled.
//   - Containers are never auto-removed and have no restart policy: an
//     agent that exits stays visible as PhaseExited, with its exit code
//     (and OOM kill) in Reason, until the Manager removes it.
//   - The engine is never asked to pull: a missing image is an error
//     wrapping provider.ErrImage. An unreachable engine wraps
//     provider.ErrUnavailable.
//
// CPUMillis and MemoryBytes become the container's CPU quota (NanoCPUs)
// and memory limit (swap disabled). The engine refuses a CPU quota above
// its number of CPUs.
//
// Networking: the agent dials HODEI_SERVER from inside the container. On
// the default bridge the host is the bridge gateway (usually 172.17.0.1);
// Config.ExtraHosts = []string{"host.docker.internal:host-gateway"} gives
// it a stable name. The server must listen on an address the containers
// can reach (not 127.0.0.1).
//
// The subpackage dockertest builds the agent image from the working tree
// and hands tests a Driver with an owner that is swept on cleanup.
package docker
