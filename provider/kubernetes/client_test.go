package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hodei-jobs/hodei/provider"
)

// fakeAPI is an API server that records requests and answers with the
// handler's choice.
type fakeAPI struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	Method, Path, Query, ContentType, UserAgent, Auth, Impersonate string
	Body                                                           string
}

func newFakeAPI(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, body []byte)) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	f.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			ContentType: r.Header.Get("Content-Type"), UserAgent: r.Header.Get("User-Agent"), Auth: r.Header.Get("Authorization"),
			Impersonate: r.Header.Get("Impersonate-User"), Body: string(b)})
		f.mu.Unlock()
		answer(w, r, b)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func (f *fakeAPI) driver(t *testing.T, conn Connection) *Driver {
	t.Helper()
	conn.Server, conn.Insecure = f.URL, true
	d, err := NewWithConnection(conn, Config{Namespace: "ns1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure",
		"code": code, "reason": reason, "message": msg})
}

// The driver's calls, as the API server sees them.
func TestClientRequests(t *testing.T) {
	f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/pods"):
			_, _ = io.WriteString(w, `{"kind":"Pod","metadata":{"name":"hodei-agent-i1","uid":"uid-1"}}`)
		case r.Method == http.MethodDelete && r.URL.Path == "/api/v1/namespaces/ns1/secrets/hodei-agent-i1":
			writeStatus(w, http.StatusNotFound, "NotFound", `secrets "hodei-agent-i1" not found`)
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/pods"):
			_, _ = io.WriteString(w, `{"kind":"PodList","items":[{"metadata":{"name":"hodei-agent-i1","creationTimestamp":"2026-01-02T03:04:05Z",`+
				`"labels":{"hodei.instance":"i1"}},"status":{"phase":"Running"}}]}`)
		default:
			_, _ = io.WriteString(w, `{}`)
		}
	})
	d := f.driver(t, Connection{BearerToken: "tok", Impersonate: "system:serviceaccount:ns1:hodei"})
	ctx := context.Background()
	req := request("i1")
	req.Env, req.Labels, req.CPUMillis, req.MemoryBytes = map[string]string{"A": "1"}, nil, 1500, 512<<20
	if _, err := d.Start(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(ctx, "hodei-agent-i1"); err != nil {
		t.Fatalf("Remove() with the secret gone = %v, want nil", err)
	}
	list, err := d.List(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	if want := []provider.Instance{{InstanceID: "i1", Handle: "hodei-agent-i1", Phase: provider.PhaseRunning,
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}; !cmp.Equal(list, want) {
		t.Errorf("List() = %+v, want %+v", list, want)
	}
	if err := d.SweepOrphans(ctx, owner, map[string]bool{"b": true, "a": true}); err != nil {
		t.Fatal(err)
	}

	const (
		sel      = "labelSelector=hodei.managed%3Dtrue%2Chodei.owner%3Dserver-1"
		sweepSel = "labelSelector=hodei.managed%3Dtrue%2Chodei.owner%3Dserver-1%2Chodei.instance+notin+%28a%2Cb%29"
		ctJSON   = "application/json"
		grace0   = `{"apiVersion":"v1","kind":"DeleteOptions","gracePeriodSeconds":0}`
		noGrace  = `{"apiVersion":"v1","kind":"DeleteOptions"}`
	)
	want := []recorded{
		{Method: "POST", Path: "/api/v1/namespaces/ns1/secrets", ContentType: ctJSON,
			Body: `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"hodei-agent-i1","labels":{"hodei.instance":"i1","hodei.managed":"true","hodei.owner":"server-1","hodei.provider":"k8s-pool"}},"type":"Opaque","data":{"HODEI_TOKEN":"am9pbi1pMQ=="}}`},
		{Method: "POST", Path: "/api/v1/namespaces/ns1/pods", ContentType: ctJSON,
			Body: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"hodei-agent-i1","labels":{"hodei.instance":"i1","hodei.managed":"true","hodei.owner":"server-1","hodei.provider":"k8s-pool"}},` +
				`"spec":{"restartPolicy":"Never","hostname":"hodei-agent-i1","automountServiceAccountToken":false,"containers":[{"name":"agent","image":"ghcr.io/hodei-jobs/agent:test","imagePullPolicy":"IfNotPresent",` +
				`"env":[{"name":"A","value":"1"},{"name":"HODEI_TOKEN","valueFrom":{"secretKeyRef":{"name":"hodei-agent-i1","key":"HODEI_TOKEN"}}},{"name":"HODEI_POD_NAME","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}],` +
				`"resources":{"limits":{"cpu":"1500m","memory":"512Mi"},"requests":{"cpu":"1500m","memory":"512Mi"}}}]}}`},
		{Method: "PATCH", Path: "/api/v1/namespaces/ns1/secrets/hodei-agent-i1", ContentType: "application/merge-patch+json",
			Body: `{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"Pod","name":"hodei-agent-i1","uid":"uid-1"}]}}`},
		{Method: "DELETE", Path: "/api/v1/namespaces/ns1/pods/hodei-agent-i1", ContentType: ctJSON, Body: grace0},
		{Method: "DELETE", Path: "/api/v1/namespaces/ns1/secrets/hodei-agent-i1", ContentType: ctJSON, Body: noGrace},
		{Method: "GET", Path: "/api/v1/namespaces/ns1/pods", Query: sel},
		{Method: "DELETE", Path: "/api/v1/namespaces/ns1/pods", Query: sweepSel, ContentType: ctJSON, Body: grace0},
		{Method: "DELETE", Path: "/api/v1/namespaces/ns1/secrets", Query: sweepSel, ContentType: ctJSON, Body: noGrace},
	}
	got := f.requests()
	for i := range got {
		if got[i].UserAgent != "hodei" || got[i].Auth != "Bearer tok" || got[i].Impersonate != "system:serviceaccount:ns1:hodei" {
			t.Errorf("request %d: User-Agent %q, Authorization %q, Impersonate-User %q", i, got[i].UserAgent, got[i].Auth, got[i].Impersonate)
		}
		got[i].UserAgent, got[i].Auth, got[i].Impersonate = "", "", ""
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// The API server's error answers keep their reason and message, and
// those that mean "not now" wrap provider.ErrUnavailable.
func TestClientErrors(t *testing.T) {
	tests := []struct {
		name        string
		answer      func(w http.ResponseWriter)
		notFound    bool
		unavailable bool
		msg         string
	}{
		{"forbidden", func(w http.ResponseWriter) {
			writeStatus(w, 403, "Forbidden", `pods is forbidden: User "x" cannot list resource "pods"`)
		}, false, false, `pods is forbidden: User "x" cannot list resource "pods"`},
		{"not found", func(w http.ResponseWriter) { writeStatus(w, 404, "NotFound", "gone") }, true, false, "gone"},
		{"unavailable", func(w http.ResponseWriter) { writeStatus(w, 503, "ServiceUnavailable", "etcd down") }, false, true, "etcd down"},
		{"proxy 502", func(w http.ResponseWriter) {
			w.WriteHeader(502)
			_, _ = io.WriteString(w, "<html>bad gateway</html>")
		}, false, false, "the server answered 502 Bad Gateway: <html>bad gateway</html>"},
		{"proxy 504", func(w http.ResponseWriter) { w.WriteHeader(504) }, false, true, "the server answered 504 Gateway Timeout"},
		{"proxy 404", func(w http.ResponseWriter) { w.WriteHeader(404) }, true, false, "the server answered 404 Not Found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) { tt.answer(w) })
			d := f.driver(t, Connection{})
			_, err := d.List(context.Background(), owner)
			if err == nil {
				t.Fatal("List() = nil error")
			}
			if isNotFound(err) != tt.notFound || errors.Is(err, provider.ErrUnavailable) != tt.unavailable ||
				!strings.HasSuffix(err.Error(), ": "+tt.msg) {
				t.Errorf("List() = %v; not found %v, unavailable %v; want %v, %v, ending in %q", err,
					isNotFound(err), errors.Is(err, provider.ErrUnavailable), tt.notFound, tt.unavailable, tt.msg)
			}
		})
	}
}

// A 429 with Retry-After is retried, as client-go does.
func TestClientRetryAfter(t *testing.T) {
	n := 0
	f := newFakeAPI(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		if n++; n < 3 {
			w.Header().Set("Retry-After", "0")
			writeStatus(w, 429, "TooManyRequests", "slow down")
			return
		}
		_, _ = io.WriteString(w, `{"items":[]}`)
	})
	d := f.driver(t, Connection{})
	if _, err := d.List(context.Background(), owner); err != nil || n != 3 {
		t.Errorf("List() = %v after %d calls, want nil after 3", err, n)
	}
}

// The limiter lets a burst through, then spaces calls at 1/qps.
func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(50, 100, func() time.Time { return now })
	for i := range 100 {
		if d := l.reserve(); d != 0 {
			t.Fatalf("call %d waits %v, want none within the burst", i, d)
		}
	}
	if d := l.reserve(); d != 20*time.Millisecond {
		t.Errorf("call 101 waits %v, want 20ms", d)
	}
	now = now.Add(time.Second)
	if d := l.reserve(); d != 0 {
		t.Errorf("after a second, wait %v, want none", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for l.reserve() == 0 {
	}
	if err := l.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("wait(canceled) = %v, want context.Canceled", err)
	}
}

// A proxy-url takes every request.
func TestProxyURL(t *testing.T) {
	var host string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host = r.URL.Host
		_, _ = io.WriteString(w, `{"items":[]}`)
	}))
	defer proxy.Close()
	d, err := NewWithConnection(Connection{Server: "http://k8s.invalid:8080/prefix", ProxyURL: proxy.URL}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.List(context.Background(), owner); err != nil || host != "k8s.invalid:8080" {
		t.Errorf("List() through the proxy = %v, proxy saw host %q", err, host)
	}
}

func TestConnectionErrors(t *testing.T) {
	tests := []struct {
		conn Connection
		want string
	}{
		{Connection{}, "server: empty"},
		{Connection{Server: "ftp://x"}, "server"},
		{Connection{Server: "https://x", CAData: []byte("junk")}, "certificate authority: no PEM certificate found"},
		{Connection{Server: "https://x", CAData: []byte("junk"), Insecure: true}, "insecure"},
		{Connection{Server: "https://x", CertData: []byte("c")}, "client certificate without client key"},
		{Connection{Server: "https://x", CertData: []byte("c"), KeyData: []byte("k")}, "client certificate"},
		{Connection{Server: "https://x", ProxyURL: "ftp://p"}, "proxy URL"},
		{Connection{Server: "https://x", TokenFile: "/nonexistent/token"}, "token file /nonexistent/token"},
		{Connection{Server: "https://x", Exec: &ExecConfig{Command: "x", APIVersion: "v2"}}, "exec: apiVersion"},
	}
	for _, tt := range tests {
		_, err := NewWithConnection(tt.conn, Config{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewWithConnection(%+v) = %v, want an error about %q", tt.conn, err, tt.want)
		}
	}
}
