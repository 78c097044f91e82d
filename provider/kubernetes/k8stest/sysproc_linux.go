package k8stest

import "syscall"

// sysProcAttr kills the servers when the test binary dies (a test
// timeout's panic, a SIGKILL), so no etcd outlives its tests.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
