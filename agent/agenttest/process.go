package agenttest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// WaitPidGone blocks until process pid has exited, or ctx ends. It waits on a
// pidfd (no polling); a pid that no longer exists has exited. A zombie counts
// as exited.
func WaitPidGone(ctx context.Context, pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("wait pid %d: %w", pid, err)
	}
	defer unix.Close(fd)
	for {
		timeout := 100 // ms; re-check ctx between polls
		if dl, ok := ctx.Deadline(); ok {
			timeout = int(min(time.Until(dl), 100*time.Millisecond).Milliseconds())
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, max(timeout, 0))
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("wait pid %d: %w", pid, err)
		}
		if n > 0 {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("wait pid %d: still running: %w", pid, ctx.Err())
		}
	}
}
