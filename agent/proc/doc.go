// Package proc runs one job script in a pseudo-terminal, in its own session
// and process group, and signals that whole group.
//
// Start runs Spec.Shell + Spec.Script (default "/bin/sh -c SCRIPT") with the
// PTY's slave as stdout, stderr and controlling terminal (Setsid + Setctty), so
// programs see a terminal and keep their colours; stdin is /dev/null so a job
// that reads its input does not hang. The script's process is the session and
// process-group leader: Signal reaches it and every descendant that did not
// leave the group (a backgrounded `sleep 1000 &` included).
//
// Read returns the PTY's output until every holder of the slave is gone, then
// io.EOF. Note the terminal line discipline turns "\n" into "\r\n".
//
// Typical use:
//
//	p, err := proc.Start(spec)
//	go copy output with p.Read until io.EOF
//	exit := p.Wait()          // the script's own exit
//	p.Signal(syscall.SIGKILL) // reap what it left behind in its group
//	(wait for the reader, bounded) then p.Close()
package proc
