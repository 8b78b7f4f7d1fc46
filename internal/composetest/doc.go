// Package composetest drives the docker-compose cluster (docker-compose.yml
// at the repository root) from the outside, over its published gateway ports,
// and runs the node-failure drill: placement quorum loss, recovery, worker
// loss.
//
// It builds the images (deployments/build-images.sh, offline, FROM scratch)
// and starts ten containers, so it takes a minute or two; it runs with the
// rest of the tests (`go test ./...`), or alone:
//
//	go test -count=1 -v -timeout 10m ./internal/composetest/
//
// It skips when docker-compose (or `docker compose`) or the Docker daemon is
// unavailable and fails on anything else. The gateways are published on
// 127.0.0.1:9000 and :9001, or on two free ports when those are taken (or
// COLDSTART_GATEWAY_PORTS="A,B"). See deployments/README.md.
package composetest
