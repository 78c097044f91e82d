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
// Talking to the engine: the driver makes its few Engine API calls
// (container create, start, inspect, list by label, remove with force;
// image and network inspect) itself, over net/http and encoding/json with
// small request and reply structs of its own (engine.go), not through the
// Docker SDK, whose API types, dependencies and OpenTelemetry transport
// cost every hodei process megabytes of RSS whether or not a Docker
// provider is configured. TestNoDockerSDK keeps it that way.
//
//   - Address: Config.Host, else DOCKER_HOST, else
//     unix:///var/run/docker.sock. Schemes unix:// and tcp://; a tcp://
//     host uses TLS when DOCKER_CERT_PATH holds ca.pem, cert.pem and
//     key.pem, verifying the engine's certificate only when
//     DOCKER_TLS_VERIFY is set (the docker CLI's variables and meaning).
//     Other schemes (ssh://, npipe://, https://) are refused by New.
//   - API version: negotiated once, on the first call or Ping, as the lower
//     of the engine's (GET /_ping's Api-Version header) and 1.51, the
//     newest the structs were checked against. Engines accept every
//     version down to their minimum (1.24 up to Docker 28, 1.44 from
//     Docker 29), so no fixed version would fit them all.
//     DOCKER_API_VERSION pins it instead.
//   - Errors: a reply of 400 or more becomes an error carrying the
//     engine's message and status ("No such image: x (engine: 404 Not
//     Found)"); 404 is how the driver tells a missing container or image.
//     Failing to connect at all wraps provider.ErrUnavailable; a cancelled
//     or expired ctx returns ctx's error.
//
// The subpackage dockertest builds the agent image from the working tree
// and hands tests a Driver with an owner that is swept on cleanup.
package docker
