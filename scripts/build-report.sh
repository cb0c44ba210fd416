#!/usr/bin/env bash
# Builds the hand-in report, docs/report/report.pdf, from scratch in one command:
#
#   scripts/build-report.sh [OUT_DIR]      (OUT_DIR defaults to docs/report)
#
# 1. builds chitty-chat (cargo build --release) from the commit checked out, or uses the binary named by
#    CHITTY_CHAT_BIN;
# 2. runs `chitty-chat demo` with its logs in OUT_DIR/run/logs: a service, alice, bob and carol, dave who
#    joins, publishes and leaves, carol killed with SIGKILL (a crash-leave), then the rest leave; every
#    process writes a JSON log there, and what the demo prints goes to OUT_DIR/run/demo-output.txt;
# 3. draws the space-time diagrams of that run with `chitty-chat diagram` into OUT_DIR/run;
# 4. records the repository link (`git remote get-url origin`, if there is one) and the commit;
# 5. renders docs/report/report.typ with Typst into OUT_DIR/report.pdf.
#
# The report names a commit, so it describes that commit: when the code in the working tree has
# uncommitted changes, the script builds and quotes the commit as committed (exported with `git archive`
# into a scratch directory, built in target/report-snapshot), not the changes. The report's own source,
# docs/report/report.typ, always comes from the working tree.
#
# Typst compiles in a scratch directory that holds everything the report reads (its source, the run, the
# diagrams, the code it quotes), so OUT_DIR may be anywhere, a temporary directory included, and nothing
# outside OUT_DIR is written (but for cargo's target directory). Needs cargo, git, jq and typst; typst and
# jq are installed when missing, with `cargo install typst-cli --locked` (into ~/.cargo/bin, several
# minutes) and `apt-get install -y jq`.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/docs/report}"

fail() {
    echo "build-report: $*" >&2
    exit 1
}
say() {
    echo "build-report: $*" >&2
}

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# --- tools -------------------------------------------------------------------------------------------

export PATH="$HOME/.cargo/bin:$PATH"

command -v cargo > /dev/null || fail "cargo is needed; install the Rust toolchain (https://rustup.rs)"
command -v git > /dev/null || fail "git is needed: apt-get install -y git"

if ! command -v jq > /dev/null; then
    say "jq is missing; installing it with apt-get"
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get > /dev/null; then
        if ! { apt-get update -qq && apt-get install -y -qq jq > /dev/null; }; then
            fail "could not install jq; install it by hand (apt-get install -y jq) and run again"
        fi
    else
        fail "jq is needed and cannot be installed from here: run 'sudo apt-get install -y jq'"
    fi
fi

if ! command -v typst > /dev/null; then
    say "typst is missing; installing it with 'cargo install typst-cli --locked' (several minutes)"
    cargo install typst-cli --locked ||
        fail "could not install typst; run 'cargo install typst-cli --locked' by hand and run again"
fi

# --- which code ----------------------------------------------------------------------------------------

# The code that runs and is quoted comes from $source: the checkout itself, or a snapshot of its commit.
source="$repo"
target="$repo/target"
repo_url=""
commit=""
commit_date=""
dirty=false
if git -C "$repo" rev-parse --git-dir > /dev/null 2>&1; then
    repo_url="$(git -C "$repo" remote get-url origin 2> /dev/null || true)"
    commit="$(git -C "$repo" rev-parse HEAD)"
    commit_date="$(git -C "$repo" log -1 --format=%cs HEAD)"
    # Changes to what is built count; the tests, the report and this script do not.
    changed="$(git -C "$repo" status --porcelain --untracked-files=no -- \
        crates proto Cargo.toml Cargo.lock ':(exclude)crates/*/tests/**')"
    if [[ -n "$changed" ]]; then
        if [[ -n "${CHITTY_CHAT_BIN:-}" ]]; then
            # The binary given was probably built from those changes; the report says so.
            dirty=true
        else
            say "the code has uncommitted changes; building and quoting commit ${commit:0:12} as committed"
            source="$scratch/source"
            target="$repo/target/report-snapshot"
            mkdir -p "$source"
            git -C "$repo" archive HEAD | tar -x -C "$source" || fail "cannot export commit $commit"
        fi
    fi
else
    say "not a Git checkout: the report will name no commit"
fi

# --- the binary --------------------------------------------------------------------------------------

if [[ -n "${CHITTY_CHAT_BIN:-}" ]]; then
    binary="$CHITTY_CHAT_BIN"
    [[ -x "$binary" ]] || fail "CHITTY_CHAT_BIN=$binary is not an executable file"
else
    say "building chitty-chat (cargo build --release -p chitty-chat, in $target)"
    (cd "$source" && CARGO_TARGET_DIR="$target" cargo build --release --locked -p chitty-chat) ||
        fail "cargo build failed"
    binary="$target/release/chitty-chat"
fi

# --- the run -----------------------------------------------------------------------------------------

mkdir -p "$out" || fail "cannot create $out"
out="$(cd "$out" && pwd)"
run="$out/run"
# The demo's directory holds only logs: `chitty-chat diagram` reads every file in it.
logs="$run/logs"
rm -rf "$run"
mkdir -p "$logs"

say "running the demo, logging into $logs"
if ! "$binary" demo --out "$logs" > "$run/demo-output.txt" 2>&1; then
    cat "$run/demo-output.txt" >&2
    fail "the demo failed (its output is above and in $run/demo-output.txt)"
fi
# The service's database: not a log, and binary.
rm -rf "$logs/service-data"

service_log="$logs/service.log"
[[ -s "$service_log" ]] || fail "the demo wrote no service log at $service_log"

# The sequence the report traces: the late participant's join, publish and leave, and the end of the run
# with the crash-leave. Their seqs are read from the service log rather than assumed.
late="$(jq -r 'select(.event == "join") | .participant' "$service_log" | tail -n 1)"
left_seq="$(jq -r --arg who "$late" 'select(.event == "leave" and .participant == $who) | .seq' "$service_log")"
last_seq="$(jq -s -r '[.[] | select(.event == "broadcast") | .seq] | max' "$service_log")"
crashed="$(jq -r 'select(.event == "crash_leave") | .participant' "$service_log")"
[[ -n "$late" && -n "$left_seq" && "$last_seq" != null && -n "$crashed" ]] ||
    fail "the service log lacks a late join and leave, or a crash-leave: see $service_log"

say "drawing the diagrams: $late's session, and seq $left_seq to $last_seq (the crash-leave of $crashed)"
"$binary" diagram "$logs" --participant "$late" -o "$run/diagram-$late.svg" ||
    fail "chitty-chat diagram --participant $late failed"
"$binary" diagram "$logs" --from "$left_seq" --to "$last_seq" -o "$run/diagram-end.svg" ||
    fail "chitty-chat diagram --from $left_seq --to $last_seq failed"

# --- render ------------------------------------------------------------------------------------------

# The code the report quotes, copied whole; the report picks its excerpts by content, so an excerpt that
# no longer matches the code stops the build. The participant's file is found by what it contains, the
# receive rule for events, rather than by a name that may change.
participant_source=""
for candidate in "$source"/crates/chitty-participant/src/*.rs; do
    if grep -q 'self.clock.witness(event.lamport)' "$candidate"; then
        participant_source="${candidate#"$source"/}"
        break
    fi
done
[[ -n "$participant_source" ]] ||
    fail "no file in crates/chitty-participant/src witnesses events as the report quotes (self.clock.witness(event.lamport))"
quoted_sources=(
    crates/chitty-core/src/lamport.rs
    crates/chitty-service/src/chat.rs
    crates/chitty-service/src/hub.rs
    "$participant_source"
)

# How the report names where the run is kept: relative to the repository when it is inside it.
case "$run" in
    "$repo"/*) run_dir="${run#"$repo"/}" ;;
    *) run_dir="$run" ;;
esac

stage="$scratch/stage"
mkdir -p "$stage"
cp "$repo/docs/report/report.typ" "$stage/report.typ"
cp -R "$run" "$stage/run"
for quoted in "${quoted_sources[@]}"; do
    mkdir -p "$stage/src/$(dirname "$quoted")"
    cp "$source/$quoted" "$stage/src/$quoted"
done
jq -n \
    --arg repo_url "$repo_url" \
    --arg local_path "$repo" \
    --arg commit "$commit" \
    --arg commit_date "$commit_date" \
    --argjson dirty "$dirty" \
    --arg late "$late" \
    --arg crashed "$crashed" \
    --arg participant_source "$participant_source" \
    --arg run_dir "$run_dir" \
    '$ARGS.named' > "$stage/meta.json"

say "rendering $out/report.pdf with $(typst --version)"
typst compile --root "$stage" "$stage/report.typ" "$out/report.pdf" ||
    fail "typst could not render the report (see the error above)"
say "done: $out/report.pdf, from the run logged in $logs"
