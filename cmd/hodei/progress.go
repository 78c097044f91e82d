package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// progress draws a one-line progress bar on a terminal and nothing when
// the output is piped or redirected.
type progress struct {
	w     io.Writer
	label string
	total uint64
	tty   bool
	mu    sync.Mutex
	last  time.Time
	start time.Time
}

func newProgress(w io.Writer, label string, total uint64) *progress {
	f, ok := w.(*os.File)
	tty := false
	if ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, label: label, total: total, tty: tty, start: time.Now()}
}

// update redraws at most ten times a second.
func (p *progress) update(done uint64) {
	if !p.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < 100*time.Millisecond && done < p.total {
		return
	}
	p.last = time.Now()
	pct := 100.0
	if p.total > 0 {
		pct = float64(done) * 100 / float64(p.total)
	}
	const width = 30
	fill := int(pct / 100 * width)
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = ' '
		if i < fill {
			bar[i] = '='
		}
	}
	rate := float64(done) / max(time.Since(p.start).Seconds(), 1e-9)
	fmt.Fprintf(p.w, "\r%s [%s] %5.1f%% %d/%d (%.0f/s)", p.label, bar, pct, done, p.total, rate)
}

// finish ends the bar's line.
func (p *progress) finish() {
	if p.tty {
		p.update(p.total)
		fmt.Fprintln(p.w)
	}
}
