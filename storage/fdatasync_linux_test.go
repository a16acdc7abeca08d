package storage_test

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data (and the size it needs) to the disk.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
