#!/usr/bin/env bash
# One command up for the docker-compose cluster (docker-compose.yml):
# builds the offline images when one is missing (deployments/build-images.sh,
# no registry), starts every service, waits until every container is healthy
# and both gateways answer /healthz (deadline: COLDSTART_UP_TIMEOUT seconds,
# default 180), then prints where to go next.
#
#   scripts/compose-up.sh            # build what is missing, up, wait
#   scripts/compose-up.sh --build    # rebuild the images from the sources first
#   scripts/compose-down.sh          # down -v
#
# Works with Compose v2 (`docker compose`) and docker-compose 1.29 (v1).
# Environment: COMPOSE_PROJECT_NAME (default: compose's, the directory name),
# COLDSTART_IMAGE / COLDSTART_WORKER_IMAGE / COLDSTART_REDIS_IMAGE (images),
# COLDSTART_GATEWAY1_PORT / COLDSTART_GATEWAY2_PORT (host ports, 9000/9001),
# COLDSTART_UP_TIMEOUT, GO (the Go toolchain for the build).
set -euo pipefail

build=auto
for arg in "$@"; do
	case "$arg" in
	--build) build=yes ;;
	-h | --help)
		sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "compose-up.sh: unknown argument $arg (see --help)" >&2
		exit 2
		;;
	esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. "$root/scripts/compose-lib.sh"
find_compose compose-up.sh

image=${COLDSTART_IMAGE:-coldstart:dev}
worker_image=${COLDSTART_WORKER_IMAGE:-coldstart-worker:dev}
redis_image=${COLDSTART_REDIS_IMAGE:-coldstart-redis:dev}
port1=${COLDSTART_GATEWAY1_PORT:-9000}
port2=${COLDSTART_GATEWAY2_PORT:-9001}
timeout=${COLDSTART_UP_TIMEOUT:-180}

# --- images and the cluster secret -------------------------------------------
# Only the offline images (their default names) are built when missing;
# other names (coldstart:release, redis:7.2) are the user's, which compose
# runs or pulls as they are. --build builds under whatever names are set.
have() { docker image inspect "$1" >/dev/null 2>&1; }
if [[ $build == auto ]]; then
	build=no
	[[ $image != coldstart:dev ]] || have "$image" || build=yes
	[[ $worker_image != coldstart-worker:dev ]] || have "$worker_image" || build=yes
	[[ $redis_image != coldstart-redis:dev ]] || have "$redis_image" || build=yes
fi
if [[ $build == yes ]]; then
	flags=()
	# A Redis image that is not the offline one is pulled by compose.
	[[ $redis_image == coldstart-redis:dev ]] || flags+=(--no-redis)
	echo "building images (deployments/build-images.sh ${flags[*]:-})"
	deployments/build-images.sh "${flags[@]}"
else
	# The cluster secret every container mounts (kept if it exists).
	deployments/build-images.sh --secret-only
fi

# --- up ------------------------------------------------------------------------
# v1's `up -d` itself waits for the depends_on health conditions (placement
# before gateways and workers); v2's does too. Neither waits for the last
# services to turn healthy, which the loop below does.
"${compose[@]}" up -d

# --- wait for health -------------------------------------------------------------
# A probe of the gateways' /healthz from the host: curl if there is one,
# else the coldstart binary build-images.sh left, else inside the container.
probe() { # url service
	if command -v curl >/dev/null 2>&1; then
		curl -fsS -m 2 -o /dev/null "$1" 2>/dev/null
	elif [[ -x deployments/.build/coldstart/coldstart ]]; then
		deployments/.build/coldstart/coldstart healthcheck --url "$1" >/dev/null 2>&1
	else
		local id
		id=$("${compose[@]}" ps -q "$2")
		[[ -n $id ]] && docker exec "$id" /coldstart healthcheck --url "http://$2:${1##*:}" >/dev/null 2>&1
	fi
}
deadline=$((SECONDS + timeout))
while :; do
	ids=$("${compose[@]}" ps -q)
	waiting=()
	for id in $ids; do
		st=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")
		read -r svc status health <<<"$st"
		if [[ $status != running || ($health != healthy && $health != none) ]]; then
			waiting+=("$svc:$status/$health")
		fi
	done
	[[ -n $ids ]] || waiting+=("no containers")
	probe "http://127.0.0.1:$port1/healthz" gateway1 || waiting+=("gateway1 /healthz")
	probe "http://127.0.0.1:$port2/healthz" gateway2 || waiting+=("gateway2 /healthz")
	((${#waiting[@]} == 0)) && break
	if ((SECONDS >= deadline)); then
		echo "compose-up.sh: not healthy after ${timeout}s: ${waiting[*]}" >&2
		"${compose[@]}" ps >&2 || true
		"${compose[@]}" logs --no-color --tail=30 >&2 || true
		exit 1
	fi
	sleep 0.5
done

project=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.project"}}' "$(echo "$ids" | head -1)")
cat <<MSG
coldstart is up (compose project $project):
  gateway1   http://127.0.0.1:$port1   (Lambda API; dashboard http://127.0.0.1:$port1/ ; metrics /metrics)
  gateway2   http://127.0.0.1:$port2
  status     coldstart status --gateway http://127.0.0.1:$port1
  chaos      coldstart chaos list --target compose --project $project
             coldstart chaos kill leader --target compose --project $project   (then: restart leader)
             (compose faults go through the docker CLI: no admin endpoint or token;
              the cluster's only listeners on the host are the gateways, on 127.0.0.1)
  down       scripts/compose-down.sh
MSG
