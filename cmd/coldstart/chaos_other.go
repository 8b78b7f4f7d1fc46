//go:build !unix

package main

import "errors"

// signalPID needs SIGSTOP and SIGCONT, which this system does not have.
func signalPID(pid int, verb string) (string, error) {
	return "", errors.New("--pid needs SIGSTOP/SIGCONT (a Unix system)")
}
