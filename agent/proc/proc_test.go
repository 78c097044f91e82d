package proc

import (
	"io"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// readAll collects the process output until EOF (in a goroutine).
func readAll(p *Process) <-chan []byte {
	ch := make(chan []byte, 1)
	go func() {
		var out []byte
		buf := make([]byte, 4096)
		for {
			n, err := p.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				ch <- out
				return
			}
		}
	}()
	return ch
}

func waitOut(t *testing.T, ch <-chan []byte) []byte {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(10 * time.Second):
		t.Fatalf("output did not end")
		return nil
	}
}

func TestColoursAndExitCode(t *testing.T) {
	p, err := Start(Spec{Script: `printf '\033[31mred\033[0m'; printf 'a\nb'; [ -t 1 ] && printf ' tty'; exit 3`, Env: []string{"PATH=/usr/bin:/bin"}})
	if err != nil {
		t.Fatalf("Start() = %v", err)
	}
	out := readAll(p)
	ex := p.Wait()
	got := waitOut(t, out)
	_ = p.Close()
	if want := "\x1b[31mred\x1b[0ma\r\nb tty"; string(got) != want {
		t.Fatalf("output = %q, want %q", got, want)
	}
	if ex.Code != 3 || ex.Signal != "" {
		t.Fatalf("Wait() = %+v, want code 3", ex)
	}
}

// waitGone waits, without polling, until pid has exited (pidfd readability).
func waitGone(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err == unix.ESRCH {
		return
	}
	if err != nil {
		t.Fatalf("PidfdOpen(%d) = %v", pid, err)
	}
	defer unix.Close(fd)
	n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(timeout.Milliseconds()))
	if err != nil || n != 1 {
		t.Fatalf("process %d still alive after %v (poll = %d, %v)", pid, timeout, n, err)
	}
}

// chunks streams the process output; the channel closes at EOF.
func chunks(p *Process) <-chan []byte {
	ch := make(chan []byte, 64)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 4096)
			n, err := p.Read(buf)
			if n > 0 {
				ch <- buf[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

func TestSignalReachesGrandchild(t *testing.T) {
	p, err := Start(Spec{Script: `sleep 1000 & echo "pid=$!."; wait`, Env: []string{"PATH=/usr/bin:/bin"}})
	if err != nil {
		t.Fatalf("Start() = %v", err)
	}
	out := chunks(p)
	var seen []byte
	re := regexp.MustCompile(`pid=(\d+)\.`)
	var pid int
	timeout := time.After(10 * time.Second)
	for pid == 0 {
		select {
		case b := <-out:
			seen = append(seen, b...)
			if m := re.FindSubmatch(seen); m != nil {
				pid, _ = strconv.Atoi(string(m[1]))
			}
		case <-timeout:
			t.Fatalf("no pid in output %q", seen)
		}
	}
	if err := unix.Kill(pid, 0); err != nil {
		t.Fatalf("grandchild %d not running: %v", pid, err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("Signal() = %v", err)
	}
	ex := p.Wait()
	if ex.Signal != "SIGTERM" || ex.Code != -1 {
		t.Fatalf("Wait() = %+v, want SIGTERM", ex)
	}
	waitGone(t, pid, 10*time.Second)
	for range out {
	}
	_ = p.Close()
}

func TestCloseUnblocksRead(t *testing.T) {
	p, err := Start(Spec{Script: `exec sleep 1000`, Env: []string{"PATH=/usr/bin:/bin"}})
	if err != nil {
		t.Fatalf("Start() = %v", err)
	}
	out := readAll(p)
	_ = p.Close()
	waitOut(t, out)
	_ = p.Signal(syscall.SIGKILL)
	// Closing the master hangs up the terminal (SIGHUP) before our SIGKILL.
	if ex := p.Wait(); ex.Code != -1 || ex.Signal == "" {
		t.Fatalf("Wait() = %+v, want killed by a signal", ex)
	}
	var _ io.Reader = p
}
