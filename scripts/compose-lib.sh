# Sourced by compose-up.sh and compose-down.sh: sets the array compose to
# the compose command found here (Compose v2's `docker compose`, else
# docker-compose 1.29) on the repository's docker-compose.yml, with
# COMPOSE_PROJECT_NAME as the project when set. $1 names the caller in
# the error.
find_compose() {
	if docker compose version >/dev/null 2>&1; then
		compose=(docker compose)
	elif command -v docker-compose >/dev/null 2>&1; then
		compose=(docker-compose)
	else
		echo "$1: neither \`docker compose\` (v2) nor docker-compose (v1) is installed" >&2
		exit 1
	fi
	compose+=(-f "$root/docker-compose.yml")
	if [[ -n ${COMPOSE_PROJECT_NAME:-} ]]; then
		compose+=(-p "$COMPOSE_PROJECT_NAME")
	fi
}
