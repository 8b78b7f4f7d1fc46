#!/bin/sh
# Builds the images docker-compose.yml runs, offline (no registry needed):
#
#   coldstart:dev        FROM scratch + the static coldstart binary built here
#   coldstart-redis:dev  FROM scratch + Debian's redis-server/redis-cli and
#                        their shared libraries (only if redis-server is
#                        installed: apt-get install -y redis-server)
#
# It also generates the cluster secret docker-compose.yml mounts into every
# container, deployments/secrets/cluster-secret, when there is none (an
# existing one is kept: see deployments/README.md, "Cluster secret").
#
# Idempotent: rerunning with unchanged sources reuses Go's build cache and
# Docker's layer cache and leaves the same image IDs.
#
# Usage: deployments/build-images.sh [--redis|--no-redis]
#   --redis     fail if the Redis image cannot be built
#   --no-redis  do not build the Redis image
#   (default)   build the Redis image when /usr/bin/redis-server exists
# Environment: COLDSTART_IMAGE (default coldstart:dev),
#              COLDSTART_REDIS_IMAGE (default coldstart-redis:dev),
#              GO (default: go on PATH, else /usr/local/go/bin/go).
set -eu

redis=auto
for arg in "$@"; do
	case "$arg" in
	--redis) redis=yes ;;
	--no-redis) redis=no ;;
	-h | --help)
		sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "build-images.sh: unknown argument $arg" >&2
		exit 2
		;;
	esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/deployments/.build"
image=${COLDSTART_IMAGE:-coldstart:dev}
redis_image=${COLDSTART_REDIS_IMAGE:-coldstart-redis:dev}

go=${GO:-}
if [ -z "$go" ]; then
	if command -v go >/dev/null 2>&1; then
		go=go
	elif [ -x /usr/local/go/bin/go ]; then
		go=/usr/local/go/bin/go
	else
		echo "build-images.sh: no Go toolchain (set GO=/path/to/go)" >&2
		exit 1
	fi
fi
command -v docker >/dev/null 2>&1 || {
	echo "build-images.sh: docker is not installed" >&2
	exit 1
}

# --- cluster secret ------------------------------------------------------------
# 32 random bytes as hex. The directory is private (0700); the file itself
# is 0644 so that the containers' user (uid 65532) can read it through the
# bind mount. Never printed.
secrets="$root/deployments/secrets"
secret_file="$secrets/cluster-secret"
if [ -d "$secret_file" ]; then
	# `docker-compose up` before this script makes an empty directory of
	# the missing bind-mount source.
	rmdir "$secret_file" 2>/dev/null || {
		echo "build-images.sh: $secret_file is a directory, not a secret file" >&2
		exit 1
	}
fi
if [ ! -s "$secret_file" ]; then
	mkdir -p "$secrets"
	chmod 700 "$secrets"
	tmp="$secret_file.new.$$"
	(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$tmp" && echo >>"$tmp")
	[ "$(wc -c <"$tmp")" -eq 65 ] || {
		rm -f "$tmp"
		echo "build-images.sh: could not read 32 random bytes from /dev/urandom" >&2
		exit 1
	}
	chmod 644 "$tmp"
	mv -f "$tmp" "$secret_file"
	echo "generated $secret_file"
fi

# Legacy builder or BuildKit both work: FROM scratch pulls nothing.
build() { # tag dockerfile context
	docker build --quiet --pull=false -t "$1" -f "$2" "$3" >/dev/null
	echo "built $1 $(docker image inspect -f '{{.Id}}' "$1" | cut -c1-19) ($(docker image inspect -f '{{.Size}}' "$1") bytes)"
}

# --- coldstart:dev -----------------------------------------------------------
ctx="$out/coldstart"
mkdir -p "$ctx/data" "$ctx/tmp"
chmod 1777 "$ctx/tmp"
(cd "$root" && CGO_ENABLED=0 "$go" build -trimpath -ldflags='-s -w' -o "$ctx/coldstart.new" ./cmd/coldstart)
mv -f "$ctx/coldstart.new" "$ctx/coldstart"
build "$image" "$root/deployments/Dockerfile" "$ctx"

# --- coldstart-redis:dev -----------------------------------------------------
if [ "$redis" = no ]; then
	exit 0
fi
if [ ! -x /usr/bin/redis-server ] || [ ! -x /usr/bin/redis-cli ]; then
	msg="redis-server/redis-cli not installed (apt-get install -y redis-server): $redis_image not built; run compose without --profile redis"
	if [ "$redis" = yes ]; then
		echo "build-images.sh: $msg" >&2
		exit 1
	fi
	echo "note: $msg"
	exit 0
fi
command -v ldd >/dev/null 2>&1 || {
	echo "build-images.sh: ldd not found, cannot collect Redis's libraries" >&2
	exit 1
}
rctx="$out/redis"
rm -rf "$rctx"
mkdir -p "$rctx/rootfs/usr/bin" "$rctx/rootfs/tmp" "$rctx/data"
chmod 1777 "$rctx/rootfs/tmp"
# /usr/bin/redis-server is a symlink to the multi-call redis-check-rdb, which
# picks its mode from argv[0]: copy the target under the server's name.
cp -L /usr/bin/redis-server "$rctx/rootfs/usr/bin/redis-server"
cp -L /usr/bin/redis-cli "$rctx/rootfs/usr/bin/redis-cli"
for lib in $( (ldd /usr/bin/redis-server; ldd /usr/bin/redis-cli) | grep -o '/[^ ]*' | sort -u); do
	mkdir -p "$rctx/rootfs$(dirname "$lib")"
	cp -L "$lib" "$rctx/rootfs$lib"
done
build "$redis_image" "$root/deployments/redis.Dockerfile" "$rctx"
