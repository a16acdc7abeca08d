//go:build unix

package main

import (
	"os"
	"syscall"
)

// childProcAttr puts a dev child in its own process group (see startChild).
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// terminate asks a dev child to stop.
func terminate(p *os.Process) error {
	return p.Signal(syscall.SIGTERM)
}
