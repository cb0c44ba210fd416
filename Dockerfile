# The chitty-chat image: the service and the participant in one small runtime image.
#
#   docker build -t chitty-chat .
#
# The base images are build arguments, so the same file builds where no registry is reachable, from
# images made locally (scripts/docker-e2e.sh does that with debootstrap):
#
#   BUILDER_IMAGE  a Rust toolchain image (default: the official rust image)
#   RUNTIME_IMAGE  a Debian image for the runtime stage (default: the official Debian slim image)
#   PREBUILT=true  take target/release/chitty-chat from the build context instead of compiling it; the
#                  binary must have been built for the runtime image's libc (Debian bookworm's)
ARG BUILDER_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILDER_IMAGE} AS build
ARG PREBUILT=false
WORKDIR /src
COPY . .
RUN if [ "$PREBUILT" = "true" ]; then \
        test -x target/release/chitty-chat \
        || { echo "PREBUILT=true needs target/release/chitty-chat: run cargo build --release first" >&2; exit 1; }; \
    else \
        cargo build --release --locked -p chitty-chat; \
    fi \
    && mkdir -p /out \
    && cp target/release/chitty-chat /out/chitty-chat

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/chitty-chat /usr/local/bin/chitty-chat
# A fixed unprivileged user; /data is where the service keeps its database.
RUN mkdir -p /data && chown 10001:10001 /data
USER 10001:10001
VOLUME ["/data"]
EXPOSE 50051
# The binary probes the service's own gRPC health service. Participant containers turn this off.
HEALTHCHECK --interval=5s --timeout=4s --start-period=10s --retries=3 \
    CMD ["chitty-chat", "health", "--server", "http://127.0.0.1:50051"]
ENTRYPOINT ["chitty-chat"]
CMD ["serve", "--listen", "0.0.0.0:50051", "--data-dir", "/data", "--log-format", "json"]
