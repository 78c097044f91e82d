package kubernetes

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// Connection says how to reach and authenticate to an API server: what a
// kubeconfig context or a Pod's service account resolve to. New builds one
// from Config.Kubeconfig or the in-cluster environment; NewWithConnection
// takes one directly.
//
// At most one of BearerToken, TokenFile, Username/Password and Exec is
// used, in that order; client certificates (CertData/KeyData, or the
// ones Exec returns) can be combined with any of them.
type Connection struct {
	// Server is the API server's URL: "https://host:port", optionally
	// with a path prefix. A URL without a scheme means https.
	Server string
	// TLSServerName, when set, is the name the server's certificate is
	// checked against instead of Server's host.
	TLSServerName string
	// Insecure skips verifying the server's certificate. It cannot be
	// combined with CAData.
	Insecure bool
	// CAData holds the PEM certificates that verify the server; empty
	// means the system's roots.
	CAData []byte
	// CertData and KeyData are a PEM client certificate and its key.
	CertData, KeyData []byte
	// ProxyURL is the proxy for every request (http, https or socks5);
	// empty means the HTTPS_PROXY and NO_PROXY environment variables.
	ProxyURL string

	// BearerToken is sent as "Authorization: Bearer".
	BearerToken string
	// TokenFile holds a bearer token. It is re-read every minute, since
	// bound service account tokens rotate.
	TokenFile string
	// Username and Password are sent as basic authentication.
	Username, Password string
	// Exec runs a credential plugin for a token or client certificate.
	Exec *ExecConfig

	// Impersonate, ImpersonateUID and ImpersonateGroups make every
	// request act as that user (the Impersonate-* headers).
	Impersonate       string
	ImpersonateUID    string
	ImpersonateGroups []string

	// Namespace is the driver's namespace when Config.Namespace is
	// empty: the kubeconfig context's or the Pod's own.
	Namespace string
}

// clientTimeout bounds every request: a safety net for callers without a
// deadline, since a hung connection must not hang the Manager.
const clientTimeout = time.Minute

// userAgent is the User-Agent of every request.
const userAgent = "hodei"

// tokenFileRefresh is how long a token read from Connection.TokenFile is
// used before the file is read again.
const tokenFileRefresh = time.Minute

// httpClient returns the client for conn: TLS, proxy, authentication and
// clientTimeout. It checks conn and names the field of a bad value.
func (conn *Connection) httpClient() (*http.Client, *url.URL, error) {
	base, err := serverURL(conn.Server)
	if err != nil {
		return nil, nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: conn.TLSServerName, InsecureSkipVerify: conn.Insecure}
	if len(conn.CAData) > 0 {
		if conn.Insecure {
			return nil, nil, errors.New("certificate authority and insecure skip TLS verify are both set: use one")
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(conn.CAData) {
			return nil, nil, errors.New("certificate authority: no PEM certificate found")
		}
	}
	switch {
	case len(conn.CertData) > 0 && len(conn.KeyData) > 0:
		cert, err := tls.X509KeyPair(conn.CertData, conn.KeyData)
		if err != nil {
			return nil, nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	case len(conn.CertData) > 0:
		return nil, nil, errors.New("client certificate without client key")
	case len(conn.KeyData) > 0:
		return nil, nil, errors.New("client key without client certificate")
	}
	proxy := http.ProxyFromEnvironment
	if conn.ProxyURL != "" {
		u, err := url.Parse(conn.ProxyURL)
		if err != nil || u.Host == "" {
			return nil, nil, fmt.Errorf("proxy URL %q: want scheme://host[:port]", conn.ProxyURL)
		}
		switch u.Scheme {
		case "http", "https", "socks5":
		default:
			return nil, nil, fmt.Errorf("proxy URL %q: scheme %q: want http, https or socks5", conn.ProxyURL, u.Scheme)
		}
		proxy = http.ProxyURL(u)
	}
	// As client-go's transport: keep-alive, HTTP/2 with a health check so
	// a silently dropped connection is noticed within a minute.
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:               proxy,
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 25,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
		HTTP2:               &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second},
	}
	at := &authTransport{next: tr, conn: conn}
	switch {
	case conn.BearerToken != "":
	case conn.TokenFile != "":
		at.tokenFile = &tokenFile{path: conn.TokenFile, now: time.Now}
		if _, err := at.tokenFile.token(); err != nil {
			return nil, nil, err
		}
	case conn.Username != "" || conn.Password != "":
	case conn.Exec != nil:
		if at.exec, err = newExecCredentials(*conn.Exec, conn, base.String()); err != nil {
			return nil, nil, err
		}
		// A rotated certificate is only sent on new connections.
		at.exec.rotated = tr.CloseIdleConnections
		if tc.Certificates == nil {
			tc.GetClientCertificate = at.exec.clientCertificate
		}
	}
	return &http.Client{Transport: at, Timeout: clientTimeout}, base, nil
}

// serverURL parses a Connection's Server.
func serverURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("server: empty")
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", s, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("server %q: want https://host[:port][/path]", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// authTransport adds the User-Agent, impersonation and credentials to each
// request. With an exec plugin, a 401 answer drops the plugin's cached
// credential and retries the request once with a fresh one.
type authTransport struct {
	next      http.RoundTripper
	conn      *Connection
	tokenFile *tokenFile
	exec      *execCredentials
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r, cred, err := t.authorize(req)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := t.next.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || t.exec == nil ||
		(req.Body != nil && req.GetBody == nil) {
		return resp, err
	}
	t.exec.expire(cred)
	r, _, err = t.authorize(req)
	if err != nil {
		// Keep the 401: it says more than the plugin's failure.
		return resp, nil
	}
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return resp, nil
		}
		r.Body = body
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return t.next.RoundTrip(r)
}

// authorize returns a copy of req with the headers set, and the exec
// credential it used.
func (t *authTransport) authorize(req *http.Request) (*http.Request, *execCredential, error) {
	r := req.Clone(req.Context())
	r.Header.Set("User-Agent", userAgent)
	c := t.conn
	if c.Impersonate != "" {
		r.Header.Set("Impersonate-User", c.Impersonate)
	}
	if c.ImpersonateUID != "" {
		r.Header.Set("Impersonate-Uid", c.ImpersonateUID)
	}
	for _, g := range c.ImpersonateGroups {
		r.Header.Add("Impersonate-Group", g)
	}
	switch {
	case c.BearerToken != "":
		r.Header.Set("Authorization", "Bearer "+c.BearerToken)
	case t.tokenFile != nil:
		tok, err := t.tokenFile.token()
		if err != nil {
			return nil, nil, err
		}
		r.Header.Set("Authorization", "Bearer "+tok)
	case c.Username != "" || c.Password != "":
		r.SetBasicAuth(c.Username, c.Password)
	case t.exec != nil:
		cred, err := t.exec.get()
		if err != nil {
			return nil, nil, err
		}
		if cred.token != "" {
			r.Header.Set("Authorization", "Bearer "+cred.token)
		}
		return r, cred, nil
	}
	return r, nil, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// tokenFile reads a bearer token from a file, again after
// tokenFileRefresh. When a re-read fails the last token is kept: the file
// may be in the middle of an atomic swap.
type tokenFile struct {
	path string
	now  func() time.Time

	mu   sync.Mutex
	tok  string
	read time.Time
}

func (f *tokenFile) token() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if f.tok != "" && now.Sub(f.read) < tokenFileRefresh {
		return f.tok, nil
	}
	b, err := os.ReadFile(f.path)
	if err == nil && strings.TrimSpace(string(b)) == "" {
		err = errors.New("empty")
	}
	if err != nil {
		if f.tok != "" {
			return f.tok, nil
		}
		return "", fmt.Errorf("token file %s: %w", f.path, err)
	}
	f.tok, f.read = strings.TrimSpace(string(b)), now
	return f.tok, nil
}
