//go:build !unix

package main

import (
	"os"
	"syscall"
)

// childProcAttr: process groups are a unix notion.
func childProcAttr() *syscall.SysProcAttr { return nil }

// terminate stops a dev child; without SIGTERM, that is a kill.
func terminate(p *os.Process) error { return p.Kill() }
