//go:build !linux

package netns

import (
	"errors"
	"os"
	"syscall"
)

var errNotLinux = errors.New("network namespaces are a Linux feature")

// Network namespaces are Linux only; New refuses to start elsewhere
// (Available says why), so these are never reached.

func enterNetns(path string, fn func() error) error { return errNotLinux }

func procAttr() *syscall.SysProcAttr { return nil }

func flockNB(f *os.File) error { return errNotLinux }

func sameFile(f *os.File, path string) bool { return false }
