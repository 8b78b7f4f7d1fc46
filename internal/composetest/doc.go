// Package composetest drives the docker-compose cluster (docker-compose.yml
// at the repository root) from the outside, as a user does: the one command
// up (scripts/compose-up.sh --build: offline images FROM scratch, then up,
// then health), faults through `coldstart chaos --target compose`, and
// scripts/compose-down.sh. The drill: kill the placement leader (found by
// role) under load, lose the placement quorum and get it back, kill a
// worker, pause and resume a worker with `coldstart check` over the records.
//
// It starts ten containers, so it takes a minute or two with warm caches;
// it runs with the rest of the tests (`go test ./...`), or alone:
//
//	go test -count=1 -v -timeout 10m ./internal/composetest/
//
// It skips when docker-compose (or `docker compose`) or the Docker daemon is
// unavailable and fails on anything else. The gateways are published on
// 127.0.0.1:9000 and :9001, or on two free ports when those are taken (or
// COLDSTART_GATEWAY_PORTS="A,B"). See deployments/README.md.
package composetest
