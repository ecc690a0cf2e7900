//go:build !linux

package proc

import "syscall"

// canWaitWithoutReaping is false here: the exit is seen only by reaping.
const canWaitWithoutReaping = false

// sysProcAttr puts the child in a group of its own. There is no
// parent-death signal outside Linux: a crashed parent can leave children.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}

func waitExited(int) {}

// groupRunning reports whether group pgid has members, zombies included.
func groupRunning(pgid int) bool { return syscall.Kill(-pgid, 0) == nil }
