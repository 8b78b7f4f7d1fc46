#!/usr/bin/env bash
# Brings the docker-compose cluster down and removes its volumes (Raft logs,
# JetStream, Redis): the next scripts/compose-up.sh bootstraps a fresh
# cluster. The "monitoring" profile's containers go too when present.
# Compose v2 or docker-compose 1.29; COMPOSE_PROJECT_NAME as for compose-up.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if docker compose version >/dev/null 2>&1; then
	compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
	compose=(docker-compose)
else
	echo "compose-down.sh: neither \`docker compose\` (v2) nor docker-compose (v1) is installed" >&2
	exit 1
fi
compose+=(-f "$root/docker-compose.yml" --profile monitoring)
if [[ -n ${COMPOSE_PROJECT_NAME:-} ]]; then
	compose+=(-p "$COMPOSE_PROJECT_NAME")
fi
"${compose[@]}" down -v --remove-orphans
