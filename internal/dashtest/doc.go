// Package dashtest drives the gateway's dashboard in headless Chromium
// against an in-process cluster: the page must chart live numbers that
// agree with /metrics and show a killed node on its timeline. It has no
// code of its own; the test is the point.
package dashtest
