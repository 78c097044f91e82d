package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/web"
)

func TestHandlerServesTheUI(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	tests := []struct {
		path, ctype, contains string
	}{
		{"/ui/", "text/html", `<script src="app.js">`},
		{"/ui/index.html", "text/html", `<main id="main"`},
		{"/ui/jobs/some-old-bookmark", "text/html", `<main id="main"`},
		{"/ui/app.js", "text/javascript", "function jobsPage"},
		{"/ui/ansi.js", "text/javascript", "Renderer.prototype.write"},
		{"/ui/style.css", "text/css", ".ansi-fg-1"},
		{"/ui/favicon.svg", "image/svg+xml", "<svg"},
	}
	for _, tt := range tests {
		resp, err := srv.Client().Get(srv.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), tt.ctype) || !strings.Contains(string(body), tt.contains) {
			t.Errorf("GET %s = %d %s, body has %q: %v", tt.path, resp.StatusCode, resp.Header.Get("Content-Type"), tt.contains, strings.Contains(string(body), tt.contains))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: CSP %q", tt.path, csp)
		}
	}
	resp, err := srv.Client().Post(srv.URL+"/ui/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui/ = %d", resp.StatusCode)
	}
}

// Nothing is loaded from elsewhere: no URL with a scheme in the UI's files.
func TestNoExternalResources(t *testing.T) {
	for _, name := range []string{"index.html", "app.js", "ansi.js", "style.css"} {
		b, err := fsRead(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"http://", "https://", "//cdn", "innerHTML", "eval("} {
			if strings.Contains(b, bad) && !(bad == "http://" && strings.Contains(b, "xmlns=\"http://www.w3.org")) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
}

func fsRead(name string) (string, error) {
	f, err := web.Files().Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	return string(b), err
}

// TestANSIRenderer runs ansi.js under node (when installed) on output split
// at awkward places, and checks the HTML it builds.
func TestANSIRenderer(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed; the browser test covers ansi.js")
	}
	chunks := []string{"plain \x1b[31mred\x1b[0m <b>&\r\n\x1b[1;3", "8;5;208mor", "ange\x1b[0m done\r\nprogress 10%\rprogress 100%\r",
		"\n\x1b]0;title\x07x\x1b[2Ky\x1b[38;2;1;2;3mrgb\x1b[7minv\x1b[0m\x1b[9"}
	arg, _ := json.Marshal(chunks)
	ansi, _ := filepath.Abs("static/ansi.js")
	out, err := exec.Command(node, "testdata/ansi_harness.js", ansi, string(arg)).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	want := `<div class="line">plain <span class="ansi-fg-1">red</span> &lt;b>&amp;</div>
<div class="line"><span class="ansi-bold" style="color:rgb(255,135,0)">or</span><span class="ansi-bold" style="color:rgb(255,135,0)">ange</span> done</div>
<div class="line">progress 100%</div>
<div class="line">xy<span style="color:rgb(1,2,3)">rgb</span><span class="ansi-inverse" style="backgroundColor:rgb(1,2,3)">inv</span></div>
`
	if string(out) != want {
		t.Fatalf("rendered:\n%s\nwant:\n%s", out, want)
	}
}
