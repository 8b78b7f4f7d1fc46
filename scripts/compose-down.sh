#!/usr/bin/env bash
# Brings the docker-compose cluster down and removes its volumes (Raft logs,
# JetStream, Redis): the next scripts/compose-up.sh bootstraps a fresh
# cluster. The "monitoring" profile's containers go too when present.
# Compose v2 or docker-compose 1.29; COMPOSE_PROJECT_NAME as for compose-up.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. "$root/scripts/compose-lib.sh"
find_compose compose-down.sh
compose+=(--profile monitoring)
"${compose[@]}" down -v --remove-orphans
