# Redis server image without a registry: Debian's redis-server (and
# redis-cli, for the healthcheck) plus the shared libraries ldd lists,
# copied by deployments/build-images.sh into <context>/rootfs/.
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 data /data
# docker-compose.yml runs `redis-server` and `redis-cli` by name, as in the
# official redis image (where they are in /usr/local/bin).
ENV PATH=/usr/local/bin:/usr/bin:/bin
USER 65532:65532
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["/usr/bin/redis-server"]
CMD ["--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data", "--appendonly", "yes"]
