//go:build unix

package main

import "syscall"

// signalPID pauses (SIGSTOP) or resumes (SIGCONT) a process.
func signalPID(pid int, verb string) (string, error) {
	sig, name := syscall.SIGSTOP, "SIGSTOP"
	if verb == "resume" {
		sig, name = syscall.SIGCONT, "SIGCONT"
	}
	return name, syscall.Kill(pid, sig)
}
