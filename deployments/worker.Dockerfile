# Worker image: the coldstart binary plus the interpreters its process
# sandboxes run, so a worker serves provided.* (bootstrap, including
# `#!/usr/bin/env python3` scripts), python3.x and nodejs*.x functions.
#
# No registry: deployments/build-images.sh copies the host's Debian binaries
# into <context>/rootfs/ (python3 and its stdlib, node, /usr/bin/env, and the
# shared libraries ldd lists) next to the static coldstart binary.
FROM scratch
COPY rootfs/ /
COPY coldstart /coldstart
COPY --chown=65532:65532 data /data
# The worker looks its interpreters up on PATH, and a sandbox's PATH is
# Lambda's (/usr/local/bin:/usr/bin/:/bin:/opt/bin) whatever this says.
ENV PATH=/usr/local/bin:/usr/bin:/bin
USER 65532:65532
WORKDIR /data
ENTRYPOINT ["/coldstart"]
CMD ["--help"]
