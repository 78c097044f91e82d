package api_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hodei-jobs/hodei/core"
)

// chromium returns the headless browser to drive: $HODEI_CHROMIUM, or
// chromium on PATH. Without one the test is skipped, except under CI=true,
// where it must run (.ci/run installs Debian's chromium).
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HODEI_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium: CI must install Debian's chromium package (or set HODEI_CHROMIUM)")
	}
	t.Skip("no chromium on PATH and HODEI_CHROMIUM unset: skipping the browser test")
	return ""
}

// TestBrowserSubmitAndFollowLog drives the web UI in headless Chromium:
// submit a job with the form, see its coloured log appear live and its
// timeline end in job.succeeded, see it in the jobs list, and see a
// worker's live CPU figure.
func TestBrowserSubmitAndFollowLog(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test in -short mode")
	}
	path := chromium(t)
	h := start(t, harnessOptions{ui: true})
	w, agent := h.connect("ui-worker", 1)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(h.ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	// The first action starts the browser: its context has no deadline of
	// its own (h.ctx bounds the whole test); later steps get one each.
	if err := chromedp.Do(bctx, chromedp.Navigate(h.http.URL+"/")); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	do := func(step string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	value := func(step string, a chromedp.Action[string]) string {
		t.Helper()
		v, err := chromedp.Run(bctx, a)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		return v
	}
	count := func(expr string) int {
		t.Helper()
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return n
	}
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }

	do("submit the form",
		chromedp.WaitVisible(css(`a[data-nav="submit"]`)),
		chromedp.Click(css(`a[data-nav="submit"]`)),
		chromedp.WaitVisible(css(`#f-name`)),
		chromedp.SendKeys(css(`#f-name`), "ui-job"),
		chromedp.SendKeys(css(`#f-script`), "printf 'hello'"),
		chromedp.SendKeys(css(`#f-labels`), "via=browser"),
		chromedp.Click(css(`#f-submit`)),
		chromedp.WaitVisible(css(`#log`)),
	)
	hash := value("location", chromedp.Location())
	id := hash[strings.LastIndex(hash, "/")+1:]
	if !strings.Contains(hash, "#/jobs/") || id == "" {
		t.Fatalf("after submit the page is %s", hash)
	}

	as := h.assignment(agent)
	if as.JobID != id || as.Script != "printf 'hello'" {
		t.Fatalf("assignment = %+v, want job %s", as, id)
	}
	h.run(w, as)
	h.write(as, "hello from \x1b[32mgreen\x1b[0m and <b>no html</b>\r\n")
	h.write(as, "\x1b[1;31mbold red\x1b[0m\r\n")
	h.finish(w, as, 0)

	do("see the live log", chromedp.WaitVisible(css(`#log span.ansi-fg-1.ansi-bold`)))
	logText := value("log text", chromedp.Text(css(`#log`)))
	injected := count(`document.querySelectorAll('#log b').length`)
	green := count(`Array.from(document.querySelectorAll('#log span.ansi-fg-2')).filter(s => s.textContent === 'green').length`)
	if !strings.Contains(logText, "hello from green and <b>no html</b>") || !strings.Contains(logText, "bold red") || injected != 0 || green != 1 {
		t.Fatalf("log = %q (injected elements %d, green spans %d)", logText, injected, green)
	}
	do("see the timeline end",
		chromedp.WaitVisible(css(`#timeline li[data-type="job.succeeded"]`)),
		chromedp.WaitVisible(css(`h1 .s-succeeded`)),
	)

	do("reload the job page: the timeline comes from the job's history",
		chromedp.Reload(),
		chromedp.WaitVisible(css(`#timeline li[data-type="job.submitted"]`)),
		chromedp.WaitVisible(css(`#timeline li[data-type="job.succeeded"]`)),
		chromedp.WaitVisible(css(`#log span.ansi-fg-2`)),
	)

	do("see it in the jobs list",
		chromedp.Click(css(`a[data-nav="jobs"]`)),
		chromedp.WaitVisible(css(`tr[data-id="`+id+`"] .s-succeeded`)),
	)

	if err := h.core.Heartbeat(w, core.Telemetry{CPUPercent: 37, MemoryUsedBytes: 2 << 30, MemoryTotal: 8 << 30, FreeSlots: 1}); err != nil {
		t.Fatal(err)
	}
	do("see the worker's live CPU",
		chromedp.Click(css(`a[data-nav="workers"]`)),
		chromedp.WaitVisible(css(`tr[data-id="`+w+`"] td.cpu .bar`)),
	)
	if cpu := value("cpu cell", chromedp.Text(css(`tr[data-id="`+w+`"] td.cpu`))); !strings.Contains(cpu, "37%") {
		t.Fatalf("worker CPU cell = %q", cpu)
	}
}
