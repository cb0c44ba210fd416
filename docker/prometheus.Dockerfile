# A Prometheus server image made from Debian's prometheus package (2.42 in bookworm), for machines that
# reach no container registry; elsewhere the monitoring profile of compose.yaml and compose.cluster.yaml
# uses the official prom/prometheus image. scripts/docker-e2e.sh builds it on the base image it makes
# with debootstrap; it needs no build context, so the Dockerfile alone goes on standard input:
#
#   docker build --build-arg BASE_IMAGE=chitty-chat-base:bookworm -t chitty-prometheus:bookworm \
#       - <docker/prometheus.Dockerfile
#   PROMETHEUS_IMAGE=chitty-prometheus:bookworm docker compose --profile monitoring up
#
# The image reaches Debian's archive while it builds (Docker's default bridge network). Debian's package
# serves the classic web UI, under /classic (the root leads there). As in the official image, the
# entrypoint is the prometheus binary itself and the storage is /prometheus, so the compose files'
# `command:` (flags only) means the same to both; their configuration is mounted over
# /etc/prometheus/prometheus.yml.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
# --no-install-recommends: the server, promtool and the JavaScript of the classic web UI (Depends), without
# the node exporter and its collectors, which the package only recommends. dpkg's path-exclude leaves out
# what nothing here reads: 210 MB of moment-timezone's tz data as JSON (the UI loads only
# moment-timezone-with-data.min.js), documentation and manual pages; the image is then about 230 MB, the
# base's 117 MB included. policy-rc.d keeps the package's maintainer scripts from starting the service
# inside the build; the package lists and apt's caches (75 MB) are dropped after.
RUN printf '%s\n' 'path-exclude=/usr/share/javascript/moment-timezone/data/*' \
        'path-exclude=/usr/share/doc/*' 'path-exclude=/usr/share/man/*' \
        >/etc/dpkg/dpkg.cfg.d/chitty-prometheus-excludes \
    && printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d \
    && chmod +x /usr/sbin/policy-rc.d \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
    && rm -f /usr/sbin/policy-rc.d \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
    && mkdir -p /prometheus \
    && chown prometheus:prometheus /prometheus
# The package's own unprivileged user; /prometheus is where the compose files keep the time series.
USER prometheus
WORKDIR /prometheus
VOLUME ["/prometheus"]
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
