#!/bin/bash
# Makes the logs in testdata/restarts/: a real run with two service restarts (SIGTERM, then SIGKILL), a
# killed participant, a participant whose session ends while it is frozen (it joins again), and one that
# finds the service no longer holds what it missed (it skips). From the workspace root, after
# `cargo build -p chitty-chat`:
#
#   bash crates/chitty-check/testdata/restarts.sh /tmp/restarts
#   cp /tmp/restarts/*.log crates/chitty-check/testdata/restarts/
#
# Logs go to OUT (the first argument); what each process printed, and the service's database, go to
# OUT.screens. The timings are generous, but on a loaded machine a step may land differently: check the
# new logs with the checker before committing them.
set -u
BIN=${BIN:-target/debug/chitty-chat}
OUT=${1:?usage: restarts.sh OUT_DIR}
SCREENS=$OUT.screens
rm -rf "$OUT" "$SCREENS"; mkdir -p "$OUT" "$SCREENS"
ADDR=127.0.0.1:50617
declare -A PID FD
closefds() { for f in "${FD[@]}"; do eval "exec $f>&-"; done; }
serve() { # extra flags
  ( closefds; exec $BIN serve --listen $ADDR --data-dir "$SCREENS/data" --keepalive-interval 500ms --keepalive-timeout 1s \
      --log-format json --log-file "$OUT/service.log" "$@" > "$SCREENS/service.out" 2>&1 ) &
  SVC=$!
  sleep 0.7
}
start() { # name
  mkfifo "$SCREENS/$1.in"
  ( closefds; exec $BIN join --name "$1" --server http://$ADDR --log-format json --log-file "$OUT/$1.log" \
      < "$SCREENS/$1.in" > "$SCREENS/$1.out" 2> "$SCREENS/$1.err" ) &
  PID[$1]=$!
  local fd
  exec {fd}> "$SCREENS/$1.in"
  FD[$1]=$fd
  sleep 0.4
}
say() { echo "$2" >&${FD[$1]}; sleep 0.1; }
finish() { eval "exec ${FD[$1]}>&-"; unset "FD[$1]"; wait ${PID[$1]}; }

# Life 1.
serve --grace 1500ms
start alice; start bob; start carol; start dave
say alice "hello from alice"; say bob "hello from bob"; say carol "hello from carol"; say dave "hello from dave"
sleep 0.3
kill -KILL ${PID[dave]}; eval "exec ${FD[dave]}>&-"; unset "FD[dave]"
sleep 3   # dave is announced left
kill -TERM $SVC; wait $SVC
say alice "typed while the service was down"
# Life 2: a clean restart.
serve --grace 1500ms
sleep 1.5
say bob "after the restart"
kill -STOP ${PID[carol]}
say alice "while carol is frozen"
sleep 4   # carol's connection is declared dead and her session ends
kill -CONT ${PID[carol]}
sleep 2
say carol "carol is back"
sleep 0.3
kill -KILL $SVC; wait $SVC 2>/dev/null
say bob "typed during the crash"
# Life 3: after a crash, keeping only 2 events.
serve --grace 30s --retain-events 2
sleep 2.5
kill -STOP ${PID[bob]}
sleep 2.5  # bob's connection is declared dead; his session stays (grace 30 s)
for n in 1 2 3 4; do say alice "while bob is frozen $n"; done
sleep 0.3
kill -CONT ${PID[bob]}
sleep 2
start erin
say erin "erin passing through"
finish erin
say bob "bob is back"
sleep 0.5
finish alice; finish bob; finish carol
sleep 0.3
kill -TERM $SVC; wait $SVC
rm -f "$SCREENS"/*.in
