#!/bin/sh
# Builds the images docker-compose.yml runs, offline (no registry needed):
#
#   coldstart:dev        FROM scratch + the static coldstart binary built here
#   coldstart-worker:dev the same binary + the host's python3 (Debian's
#                        /usr/bin/python3, its stdlib and libraries), node
#                        (/usr/bin/node) and /usr/bin/env, for functions with
#                        code (an interpreter the host lacks is left out:
#                        apt-get install -y python3)
#   coldstart-redis:dev  FROM scratch + Debian's redis-server/redis-cli and
#                        their shared libraries (redis-server is installed
#                        with apt-get first when missing and this runs as
#                        root or with passwordless sudo)
#
# It also generates the cluster secret docker-compose.yml mounts into every
# container, deployments/secrets/cluster-secret, when there is none (an
# existing one is kept: see deployments/README.md, "Cluster secret").
#
# Idempotent: rerunning with unchanged sources reuses Go's build cache and
# Docker's layer cache and leaves the same image IDs.
#
# Usage: deployments/build-images.sh [--no-redis] [--no-node]
#   (default)   build the Redis image; fail if redis-server is neither
#               installed nor installable (docker-compose.yml always runs
#               Redis: the workers keep idempotency records in it)
#   --no-redis  do not build the Redis image (bring your own:
#               COLDSTART_REDIS_IMAGE=redis:7.2)
#   --redis     the default, accepted for older callers
#   --no-node   leave node out of the worker image (~100 MB smaller)
#   --secret-only  only write the cluster secret if there is none (for
#               images built elsewhere, e.g. deployments/Dockerfile.release)
# Environment: COLDSTART_IMAGE (default coldstart:dev),
#              COLDSTART_WORKER_IMAGE (default coldstart-worker:dev),
#              COLDSTART_REDIS_IMAGE (default coldstart-redis:dev),
#              GO (default: go on PATH, else /usr/local/go/bin/go).
set -eu

redis=yes
node=yes
secret_only=no
for arg in "$@"; do
	case "$arg" in
	--redis) redis=yes ;;
	--no-redis) redis=no ;;
	--no-node) node=no ;;
	--secret-only) secret_only=yes ;;
	-h | --help)
		sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'
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
worker_image=${COLDSTART_WORKER_IMAGE:-coldstart-worker:dev}
redis_image=${COLDSTART_REDIS_IMAGE:-coldstart-redis:dev}

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

[ "$secret_only" = no ] || exit 0

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

# Legacy builder or BuildKit both work: FROM scratch pulls nothing.
build() { # tag dockerfile context [docker build flags...]
	tag=$1 dockerfile=$2 context=$3
	shift 3
	docker build --quiet --pull=false "$@" -t "$tag" -f "$dockerfile" "$context" >/dev/null
	echo "built $tag $(docker image inspect -f '{{.Id}}' "$tag" | cut -c1-19) ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
}

# --- coldstart:dev -----------------------------------------------------------
ctx="$out/coldstart"
mkdir -p "$ctx/data" "$ctx/tmp"
chmod 1777 "$ctx/tmp"
(cd "$root" && CGO_ENABLED=0 "$go" build -trimpath -ldflags='-s -w' -o "$ctx/coldstart.new" ./cmd/coldstart)
mv -f "$ctx/coldstart.new" "$ctx/coldstart"
build "$image" "$root/deployments/Dockerfile" "$ctx"

# --- coldstart-worker:dev ----------------------------------------------------
command -v ldd >/dev/null 2>&1 || {
	echo "build-images.sh: ldd not found, cannot collect the interpreters' libraries" >&2
	exit 1
}
wctx="$out/worker"
rm -rf "$wctx"
mkdir -p "$wctx/rootfs/usr/bin" "$wctx/rootfs/tmp" "$wctx/data"
chmod 1777 "$wctx/rootfs/tmp"
cp "$ctx/coldstart" "$wctx/coldstart"
# env for `#!/usr/bin/env python3` bootstraps; every binary copied is real
# (cp -L), so a symlinked /usr/bin/python3 brings its target.
cp -L /usr/bin/env "$wctx/rootfs/usr/bin/env"
elves=/usr/bin/env
runtimes=provided
# Debian's python3 only: /usr/bin/python3 finds its stdlib at
# /usr/lib/python3.X, which the image reproduces. A pyenv or venv python
# on PATH is not relocatable this way.
if [ -x /usr/bin/python3 ]; then
	py=$(readlink -f /usr/bin/python3)
	pyver=$(basename "$py")
	if [ -d "/usr/lib/$pyver" ]; then
		cp -L "$py" "$wctx/rootfs/usr/bin/$pyver"
		ln -s "$pyver" "$wctx/rootfs/usr/bin/python3"
		# The stdlib without what no function uses at run time: tests, the
		# static library for embedding, IDLE, Tk, 2to3, pip's bootstrap.
		mkdir -p "$wctx/rootfs/usr/lib"
		tar -C /usr/lib -cf - \
			--exclude="$pyver/config-*" --exclude="$pyver/test" --exclude="$pyver/idlelib" \
			--exclude="$pyver/tkinter" --exclude="$pyver/turtledemo" --exclude="$pyver/lib2to3" \
			--exclude="$pyver/ensurepip" --exclude="$pyver/pydoc_data" --exclude="$pyver/site-packages" \
			--exclude="$pyver/dist-packages" "$pyver" | tar -C "$wctx/rootfs/usr/lib" -xf -
		elves="$elves $wctx/rootfs/usr/bin/$pyver $(find "$wctx/rootfs/usr/lib/$pyver/lib-dynload" -name '*.so' 2>/dev/null | tr '\n' ' ')"
		runtimes="$runtimes $pyver"
	else
		echo "note: /usr/bin/python3 has no /usr/lib/$pyver: $worker_image built without python"
	fi
else
	echo "note: /usr/bin/python3 not installed (apt-get install -y python3): $worker_image built without python"
fi
if [ "$node" = yes ] && [ -x /usr/bin/node ]; then
	cp -L /usr/bin/node "$wctx/rootfs/usr/bin/node"
	elves="$elves /usr/bin/node"
	runtimes="$runtimes node"
elif [ "$node" = yes ]; then
	echo "note: /usr/bin/node not installed: $worker_image built without node"
fi
# The libraries, at the paths the loader asks for. ldd's "not found" lines
# (a lib-dynload module for a library this host lacks) carry no path: that
# module fails to import in the image as it does on the host.
for lib in $(for e in $elves; do ldd "$e" 2>/dev/null || true; done | grep -o '/[^ ]*' | grep -v "^$wctx" | sort -u); do
	mkdir -p "$wctx/rootfs$(dirname "$lib")"
	cp -L "$lib" "$wctx/rootfs$lib"
done
build "$worker_image" "$root/deployments/worker.Dockerfile" "$wctx" --label "coldstart.runtimes=$runtimes"

# --- coldstart-redis:dev -----------------------------------------------------
if [ "$redis" = no ]; then
	exit 0
fi
if [ ! -x /usr/bin/redis-server ] || [ ! -x /usr/bin/redis-cli ]; then
	# Debian's package brings the binaries; the host's Redis service is
	# not needed (and is left as the package configures it).
	if [ "$(id -u)" -eq 0 ]; then
		sudo=""
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo="sudo -n"
	else
		echo "build-images.sh: redis-server is not installed and this user cannot install it: run apt-get install -y redis-server as root, then rerun (or --no-redis with COLDSTART_REDIS_IMAGE set to a Redis image you have)" >&2
		exit 1
	fi
	echo "installing redis-server (apt-get) for $redis_image"
	$sudo apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
	if [ ! -x /usr/bin/redis-server ] || [ ! -x /usr/bin/redis-cli ]; then
		echo "build-images.sh: apt-get install redis-server did not provide /usr/bin/redis-server and /usr/bin/redis-cli" >&2
		exit 1
	fi
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
