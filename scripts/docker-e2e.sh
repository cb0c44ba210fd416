#!/usr/bin/env bash
# The Docker end-to-end test: Chitty-Chat's image and compose.yaml, for real, on a machine that reaches
# no container registry.
#
#   1. Make the base image without a registry: build the binary on the host, and a minimal Debian root
#      file system with debootstrap, imported with `docker import` (kept between runs).
#   2. Build the image and bring up the service and three participants with compose; then the late one.
#   3. Assert from the containers' logs: the joins, the messages, the late participant's join and leave.
#   4. `docker kill` one participant: the others see it leave within 10 s.
#   5. `docker network disconnect` another: the service announces it left, by keepalive, within 20 s.
#   6. Restart the service container: participants reconnect and resume from the volume-backed history;
#      `chitty-chat check` then verifies the whole run from the collected logs.
#   7. Tear everything down, even on failure: no containers, networks or volumes are left behind.
#
# Usage: scripts/docker-e2e.sh [LOG_DIR]   (the collected logs go to LOG_DIR, default a temporary one)
set -euo pipefail
cd "$(dirname "$0")/.."

base_image=chitty-chat-base:bookworm
project="chittye2e$$"
logs_dir="${1:-$(mktemp -d /tmp/chitty-docker-e2e.XXXXXX)}"
mkdir -p "$logs_dir"
started=$(date +%s)

say() { printf '\n== %s (%ss)\n' "$*" "$(($(date +%s) - started))"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose -p "$project")
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose -p "$project")
else
  apt-get update && apt-get install -y docker-compose \
    || fail "neither 'docker compose' nor 'docker-compose' is installed, and apt-get could not install it"
  compose=(docker-compose -p "$project")
fi
export BUILDER_IMAGE="$base_image" RUNTIME_IMAGE="$base_image" PREBUILT=true

cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    echo "--- the containers' logs, for the failure above:" >&2
    "${compose[@]}" --profile late logs --no-color --tail=40 >&2 || true
  fi
  "${compose[@]}" --profile late --profile interactive down --volumes --remove-orphans >/dev/null 2>&1 || true
  exit "$status"
}
trap cleanup EXIT

# Waits until SERVICE's log has a line matching PATTERN (grep -E), at most SECONDS; FROM=new counts only
# lines written from now on.
wait_log() {
  local service=$1 pattern=$2 seconds=$3 tail=${4:-all}
  if ! (set +o pipefail; timeout "$seconds" "${compose[@]}" logs --no-color -f --tail="$tail" "$service" 2>/dev/null \
      | grep -q -m1 -E -- "$pattern"); then
    fail "$service did not log /$pattern/ within ${seconds}s"
  fi
}

say "1. the base image, without a registry"
if ! docker image inspect "$base_image" >/dev/null 2>&1; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get update && apt-get install -y debootstrap
  fi
  rootfs=$(mktemp -d /tmp/chitty-rootfs.XXXXXX)
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$logs_dir/debootstrap.log" 2>&1 \
    || { tail -20 "$logs_dir/debootstrap.log" >&2; fail "debootstrap failed"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import - "$base_image" >/dev/null
  rm -rf "$rootfs"
fi
cargo build --release --locked -p chitty-chat

say "2. the image, and the chat with compose"
"${compose[@]}" build chat
# One after another, so each sees the joins of those after it (a join reaches those already present).
for participant in alice bob carol; do
  "${compose[@]}" up -d "$participant"
  wait_log "$participant" '"event":"joined"' 60
done
wait_log alice '"event":"receive","seq":[0-9]+,"kind":"joined","participant":"carol"' 30
wait_log bob '"event":"receive","seq":[0-9]+,"kind":"joined","participant":"carol"' 30
"${compose[@]}" --profile late up -d dave

say "3. the chat, as the logs tell it"
for author in alice bob carol; do
  for watcher in alice bob carol; do
    wait_log "$watcher" "\"event\":\"receive\",\"seq\":[0-9]+,\"kind\":\"message\",\"participant\":\"$author\"" 30
  done
done
wait_log dave '"event":"leave_ok"' 60
for watcher in alice bob carol; do
  wait_log "$watcher" 'Participant dave left Chitty-Chat' 30
done
echo "joins, messages from everyone at everyone, and dave's join and leave: seen"

say "4. docker kill carol: the others see her leave within 10 s"
"${compose[@]}" kill carol >/dev/null
for watcher in alice bob; do
  wait_log "$watcher" 'Participant carol left Chitty-Chat' 10
done

say "5. docker network disconnect bob: announced left by keepalive within 20 s"
network=$(docker network ls --filter "name=${project}_default" --format '{{.Name}}' | head -1)
[ -n "$network" ] || fail "cannot find the compose network of $project"
docker network disconnect "$network" "$("${compose[@]}" ps -q bob)"
wait_log chat '"event":"crash_leave","participant":"bob"' 20
wait_log alice 'Participant bob left Chitty-Chat' 10

say "6. restart the service: alice resumes from the volume-backed history"
"${compose[@]}" restart chat >/dev/null
wait_log chat '"event":"recover"' 30
wait_log alice '"event":"reconnected"' 30
wait_log alice '"event":"receive","seq":[0-9]+,"kind":"message","participant":"alice"' 30 0

"${compose[@]}" --profile late logs --no-color >"$logs_dir/compose.log"
./target/release/chitty-chat check "$logs_dir/compose.log" | tee "$logs_dir/check.txt"

say "7. tear down"
echo "all steps passed; the logs are in $logs_dir"
