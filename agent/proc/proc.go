package proc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// DefaultShell runs the script when Spec.Shell is empty.
var DefaultShell = []string{"/bin/sh", "-c"}

// Spec describes one process to start.
type Spec struct {
	Shell  []string // argv prefix; the script is appended as the last argument
	Script string
	Env    []string // the complete environment, "KEY=value"
	Dir    string   // working directory
	Rows   uint16   // terminal size; 0 means 50 rows
	Cols   uint16   // 0 means 200 columns
}

// Exit is how the script's process ended.
type Exit struct {
	Code   int    // exit status; -1 when killed by a signal
	Signal string // the signal's name ("SIGKILL") when killed by one
}

// Process is a started script.
type Process struct {
	cmd    *exec.Cmd
	master *os.File
	pid    int
}

// Start starts spec in a new PTY, session and process group.
func Start(spec Spec) (*Process, error) {
	shell := spec.Shell
	if len(shell) == 0 {
		shell = DefaultShell
	}
	argv := append(append([]string{}, shell...), spec.Script)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = spec.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Dir = spec.Dir
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("start process: %w", err)
	}
	defer null.Close()
	cmd.Stdin = null
	rows, cols := spec.Rows, spec.Cols
	if rows == 0 {
		rows = 50
	}
	if cols == 0 {
		cols = 200
	}
	// Ctty is the child's fd 1: stdout is the PTY slave (stdin is /dev/null).
	attrs := &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 1}
	ptmx, err := pty.StartWithAttrs(cmd, &pty.Winsize{Rows: rows, Cols: cols}, attrs)
	if err != nil {
		return nil, fmt.Errorf("start process %s: %w", argv[0], err)
	}
	// creack/pty put the master in blocking mode (it calls Fd); a blocked Read
	// on it could not be interrupted by Close. Use a non-blocking, close-on-exec
	// duplicate, which the runtime poller serves.
	master, err := pollable(ptmx)
	if err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return nil, fmt.Errorf("start process: %w", err)
	}
	return &Process{cmd: cmd, master: master, pid: cmd.Process.Pid}, nil
}

func pollable(f *os.File) (*os.File, error) {
	defer f.Close()
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup pty: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("nonblock pty: %w", err)
	}
	return os.NewFile(uintptr(fd), "ptmx"), nil
}

// Pid returns the script's pid, which is also its process group id.
func (p *Process) Pid() int { return p.pid }

// Read reads output from the PTY. It returns io.EOF once no process holds the
// terminal any more (or after Close).
func (p *Process) Read(b []byte) (int, error) {
	n, err := p.master.Read(b)
	if err != nil && (errors.Is(err, syscall.EIO) || errors.Is(err, os.ErrClosed)) {
		err = io.EOF
	}
	return n, err
}

// Signal sends sig to the whole process group. A group that no longer exists
// is not an error.
func (p *Process) Signal(sig syscall.Signal) error {
	err := syscall.Kill(-p.pid, sig)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal process group %d: %w", p.pid, err)
	}
	return nil
}

// Wait waits for the script's own process to exit and reports how.
func (p *Process) Wait() Exit {
	err := p.cmd.Wait()
	st := p.cmd.ProcessState
	if st == nil {
		return Exit{Code: -1, Signal: ""}
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return Exit{Code: -1, Signal: unix.SignalName(ws.Signal())}
	}
	_ = err // a non-zero exit is reported through the code
	return Exit{Code: st.ExitCode()}
}

// Close closes the PTY master; a pending Read returns io.EOF.
func (p *Process) Close() error {
	if err := p.master.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("close pty: %w", err)
	}
	return nil
}
