// Package composetest drives the docker-compose cluster (docker-compose.yml
// at the repository root) from the outside, over its published gateway ports,
// and runs the node-failure drill: placement quorum loss, recovery, worker
// loss.
//
// The test is behind the "compose" build tag because it builds images and
// starts ten containers:
//
//	go test -tags compose -count=1 -v -timeout 10m ./internal/composetest/
//
// It skips when docker-compose (or `docker compose`) or the Docker daemon is
// unavailable and fails on anything else. The gateways are published on
// 127.0.0.1:9000 and :9001, or on two free ports when those are taken (or
// COLDSTART_GATEWAY_PORTS="A,B"). See deployments/README.md.
package composetest
