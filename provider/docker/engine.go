package docker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// engine is the handful of Docker Engine API calls the driver makes, over
// plain net/http and encoding/json with request and reply structs of its
// own: the Docker SDK costs every hodei process megabytes of RSS, whether
// or not a Docker provider is configured. The structs carry only the fields
// the driver reads or sets; the engine ignores what a request leaves out
// and the decoder what a reply adds.
//
// The API version is negotiated once, on the first call (or Ping): the
// lower of the engine's own (the Api-Version header of GET /_ping) and
// maxAPIVersion, the newest these structs were checked against; every
// engine accepts versions down to its minimum (1.24 up to Docker 28, 1.44
// from Docker 29), so the lower of the two is one both sides speak.
// DOCKER_API_VERSION, when set, pins it instead, as it does for the docker
// CLI.
type engine struct {
	host     string // the address as configured, for messages
	scheme   string // "http" or "https"
	addr     string // URL host: the engine's for tcp, unixHost for unix
	basePath string // a path prefix from a tcp:// host, usually empty
	tr       *http.Transport
	hc       *http.Client

	mu      sync.Mutex // guards version
	version string     // "1.41"; empty until negotiated
}

const (
	// defaultHost is the engine address when neither Config.Host nor
	// DOCKER_HOST names one.
	defaultHost = "unix:///var/run/docker.sock"
	// maxAPIVersion is the newest API version whose requests and replies
	// the structs below were checked against (that of the Docker 28 SDK
	// the driver used before).
	maxAPIVersion = "1.51"
	// oldestAPIVersion is assumed when /_ping names no version, as the
	// Docker SDK does: only engines older than API 1.25 leave it out.
	oldestAPIVersion = "1.24"
	// unixHost is the Host header of requests over a unix socket, the
	// name the Docker SDK uses (a reserved .localhost name).
	unixHost = "api.moby.localhost"
	// dialTimeout bounds connecting to the engine, as in the Docker SDK.
	dialTimeout = 10 * time.Second
	// maxErrorBody bounds how much of an error reply is read.
	maxErrorBody = 1 << 20
)

// newEngine returns a client of the engine at host ("unix:///path",
// "tcp://host:port"); empty means DOCKER_HOST, else defaultHost. For a
// tcp:// host, DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem) switches to
// TLS, verifying the engine's certificate only when DOCKER_TLS_VERIFY is
// set, exactly as the Docker SDK's FromEnv does. It does not contact the
// engine.
func newEngine(host string) (*engine, error) {
	if host == "" {
		host = os.Getenv("DOCKER_HOST")
	}
	if host == "" {
		host = defaultHost
	}
	proto, addr, ok := strings.Cut(host, "://")
	if !ok || addr == "" {
		return nil, fmt.Errorf("docker host %q: want unix:///path/to/socket or tcp://host:port", host)
	}
	e := &engine{host: host, scheme: "http"}
	// Few idle connections, soon closed: the Docker SDK's defaults, so a
	// long-lived server does not hold sockets it no longer uses.
	e.tr = &http.Transport{MaxIdleConns: 6, IdleConnTimeout: 30 * time.Second}
	dialer := &net.Dialer{Timeout: dialTimeout}
	switch proto {
	case "unix":
		if len(addr) > len(syscall.RawSockaddrUnix{}.Path) {
			return nil, fmt.Errorf("docker host %q: socket path is longer than %d bytes", host, len(syscall.RawSockaddrUnix{}.Path))
		}
		e.addr = unixHost
		e.tr.DisableCompression = true
		e.tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", addr)
		}
	case "tcp":
		u, err := url.Parse("tcp://" + addr)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("docker host %q: want tcp://host:port", host)
		}
		e.addr, e.basePath = u.Host, strings.TrimSuffix(u.Path, "/")
		e.tr.Proxy = http.ProxyFromEnvironment
		e.tr.DialContext = dialer.DialContext
		if dir := os.Getenv("DOCKER_CERT_PATH"); dir != "" {
			cfg, err := tlsFromEnv(dir, os.Getenv("DOCKER_TLS_VERIFY") != "")
			if err != nil {
				return nil, fmt.Errorf("docker host %q: %w", host, err)
			}
			e.tr.TLSClientConfig = cfg
			e.scheme = "https"
		}
	default:
		return nil, fmt.Errorf("docker host %q: scheme %q is not supported: want unix:// or tcp:// "+
			"(for TLS, tcp:// with DOCKER_CERT_PATH and DOCKER_TLS_VERIFY)", host, proto)
	}
	if v := os.Getenv("DOCKER_API_VERSION"); v != "" {
		e.version = strings.TrimPrefix(v, "v")
	}
	e.hc = &http.Client{
		Transport: e.tr,
		// The API does not redirect; a 3xx comes back as it is.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return e, nil
}

// tlsFromEnv is the client TLS configuration from the certificates in dir,
// as the docker CLI lays them out.
func tlsFromEnv(dir string, verify bool) (*tls.Config, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	caFile := filepath.Join(dir, "ca.pem")
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("DOCKER_CERT_PATH: %w", err)
	}
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("DOCKER_CERT_PATH: %s holds no PEM certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return nil, fmt.Errorf("DOCKER_CERT_PATH: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      pool,
		Certificates: []tls.Certificate{cert},
		// Without DOCKER_TLS_VERIFY the docker CLI and SDK encrypt but do
		// not check who answers; so does the driver, for the same setup.
		InsecureSkipVerify: !verify,
	}, nil
}

// close releases idle connections.
func (e *engine) close() { e.tr.CloseIdleConnections() }

// apiError is an error reply of the engine: its HTTP status and the
// message of its {"message": ...} body.
type apiError struct {
	status  int
	message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (engine: %d %s)", e.message, e.status, http.StatusText(e.status))
}

// isNotFound reports whether err is the engine's 404: no such container,
// image or network.
func isNotFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.status == http.StatusNotFound
}

// connError is a failure to reach the engine at all: the driver wraps it
// in provider.ErrUnavailable.
type connError struct {
	host string
	err  error
}

func (e *connError) Error() string {
	return fmt.Sprintf("cannot connect to the Docker engine at %s: %v", e.host, e.err)
}

func (e *connError) Unwrap() error { return e.err }

// send makes one request to path (below the base path, with the version
// prefix if any) and returns the reply when its status is below 400, as
// the Docker SDK does. Otherwise the error is a *connError when the engine
// could not be reached (ctx's own error is returned unchanged), else an
// *apiError.
func (e *engine) send(ctx context.Context, method, path string, query url.Values, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	u := url.URL{Scheme: e.scheme, Host: e.addr, Path: e.basePath + path, RawQuery: query.Encode()}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "hodei")
	resp, err := e.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, context.Canceled) {
			return nil, err
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the method and URL say nothing the caller does not
		}
		return nil, &connError{host: e.host, err: err}
	}
	if resp.StatusCode < http.StatusBadRequest {
		return resp, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return nil, fmt.Errorf("read %d reply: %w", resp.StatusCode, err)
	}
	var msg struct {
		Message string `json:"message"`
	}
	ae := &apiError{status: resp.StatusCode}
	switch {
	case json.Unmarshal(b, &msg) == nil && msg.Message != "":
		ae.message = strings.TrimSpace(msg.Message)
	case len(bytes.TrimSpace(b)) > 0 && !json.Valid(b):
		ae.message = strings.TrimSpace(string(b)) // a proxy's page, a plain-text error
	default:
		ae.message = "no error message"
	}
	return nil, ae
}

// ping asks GET /_ping and returns the engine's API version ("" from an
// engine too old to say).
func (e *engine) ping(ctx context.Context) (string, error) {
	resp, err := e.send(ctx, http.MethodGet, "/_ping", nil, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	v := resp.Header.Get("Api-Version")
	e.mu.Lock()
	if e.version == "" {
		e.version = negotiate(v)
	}
	e.mu.Unlock()
	return v, nil
}

// negotiate is the API version to use with an engine that speaks server.
func negotiate(server string) string {
	if server == "" {
		return oldestAPIVersion
	}
	if compareVersions(server, maxAPIVersion) < 0 {
		return server
	}
	return maxAPIVersion
}

// compareVersions compares dotted API versions ("1.41") numerically,
// like strings.Compare.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// apiVersion returns the version to prefix paths with, negotiating it
// first if no call has yet.
func (e *engine) apiVersion(ctx context.Context) (string, error) {
	e.mu.Lock()
	v := e.version
	e.mu.Unlock()
	if v != "" {
		return v, nil
	}
	if _, err := e.ping(ctx); err != nil {
		return "", err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.version, nil
}

// do makes one versioned API call and decodes its JSON reply into out
// (nil discards it). Its errors are send's, or a decoding error.
func (e *engine) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	v, err := e.apiVersion(ctx)
	if err != nil {
		return err
	}
	resp, err := e.send(ctx, method, "/v"+v+path, query, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode reply of %s %s: %w", method, path, err)
	}
	return nil
}

// The requests and replies, with the Engine API's field names. See
// https://docs.docker.com/reference/api/engine/.

// createRequest is the body of POST /containers/create.
type createRequest struct {
	Hostname   string
	Image      string
	Env        []string
	Labels     map[string]string
	HostConfig hostConfig
}

// hostConfig is the part of createRequest about the host.
type hostConfig struct {
	NetworkMode   string
	ExtraHosts    []string
	AutoRemove    bool
	RestartPolicy restartPolicy
	NanoCPUs      int64 `json:"NanoCpus"`
	Memory        int64
	MemorySwap    int64
}

// restartPolicy is a container's restart policy; Name "no" disables it.
type restartPolicy struct {
	Name string
}

// createReply is the reply of POST /containers/create.
type createReply struct {
	ID       string `json:"Id"`
	Warnings []string
}

// containerSummary is one entry of GET /containers/json.
type containerSummary struct {
	ID      string `json:"Id"`
	Created int64  // Unix seconds
	State   string // created, restarting, running, paused, exited, dead, removing
	Labels  map[string]string
}

// containerInfo is the part of GET /containers/{id}/json the driver reads.
type containerInfo struct {
	State *containerState
}

// containerState is how a container runs or ended.
type containerState struct {
	ExitCode  int
	OOMKilled bool
	Error     string
}

// networkInfo is the part of GET /networks/{id} the driver reads.
type networkInfo struct {
	IPAM struct {
		Config []struct {
			Subnet  string
			Gateway string
		}
	}
}

// createContainer creates container name; it is not started.
func (e *engine) createContainer(ctx context.Context, name string, req createRequest) (createReply, error) {
	var r createReply
	err := e.do(ctx, http.MethodPost, "/containers/create", url.Values{"name": {name}}, req, &r)
	return r, err
}

// startContainer starts container ref (an id or name); starting a running
// one is not an error.
func (e *engine) startContainer(ctx context.Context, ref string) error {
	return e.do(ctx, http.MethodPost, "/containers/"+ref+"/start", nil, nil, nil)
}

// inspectContainer returns the state of container ref.
func (e *engine) inspectContainer(ctx context.Context, ref string) (containerInfo, error) {
	var r containerInfo
	err := e.do(ctx, http.MethodGet, "/containers/"+ref+"/json", nil, nil, &r)
	return r, err
}

// removeContainer kills and removes container ref with its anonymous
// volumes.
func (e *engine) removeContainer(ctx context.Context, ref string) error {
	return e.do(ctx, http.MethodDelete, "/containers/"+ref, url.Values{"force": {"1"}, "v": {"1"}}, nil, nil)
}

// listContainers returns the containers in any state that carry every
// "key=value" of labels.
func (e *engine) listContainers(ctx context.Context, labels []string) ([]containerSummary, error) {
	f := map[string]map[string]bool{"label": {}}
	for _, l := range labels {
		f["label"][l] = true
	}
	filters, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	var r []containerSummary
	err = e.do(ctx, http.MethodGet, "/containers/json", url.Values{"all": {"1"}, "filters": {string(filters)}}, nil, &r)
	return r, err
}

// inspectImage checks that image ref is in the engine.
func (e *engine) inspectImage(ctx context.Context, ref string) error {
	return e.do(ctx, http.MethodGet, "/images/"+ref+"/json", nil, nil, nil)
}

// inspectNetwork returns the addresses of network ref (a name or id).
func (e *engine) inspectNetwork(ctx context.Context, ref string) (networkInfo, error) {
	var r networkInfo
	err := e.do(ctx, http.MethodGet, "/networks/"+ref, nil, nil, &r)
	return r, err
}
