#!/usr/bin/env bash
# Builds the hand-in report, docs/report/report.pdf, from scratch in one command:
#
#   scripts/build-report.sh [--repo-url URL] [--authors "NAMES"] [OUT_DIR]
#
#   --repo-url URL     the link to the Git repository the report gives (or CHITTY_REPORT_REPO_URL);
#                      defaults to `git remote get-url origin`. With none known, the report says so in
#                      one line and names the commit.
#   --authors "NAMES"  who wrote it, as page 1 prints it (or CHITTY_REPORT_AUTHORS).
#   OUT_DIR            where report.pdf and its run go; defaults to docs/report.
#
# 1. builds chitty-chat (cargo build --release) from the commit checked out, or uses the binary named by
#    CHITTY_CHAT_BIN;
# 2. runs `chitty-chat demo` with its logs in OUT_DIR/run/logs: a service, alice, bob and carol, dave who
#    joins, publishes and leaves, carol killed with SIGKILL (a crash-leave), then the rest leave; every
#    process writes a JSON log there, and what the demo prints goes to OUT_DIR/run/demo-output.txt;
# 3. draws the space-time diagrams of that run with `chitty-chat diagram` into OUT_DIR/run;
# 4. records the repository link, the authors and the commit (never a path of this machine);
# 5. renders docs/report/report.typ with Typst into OUT_DIR/report.pdf.
#
# The report names a commit, so it describes that commit: when the code or the report's source in the
# working tree has uncommitted changes, the script builds and renders the commit as committed (exported
# with `git archive` into a scratch directory, built in target/report-snapshot), not the changes. Given
# CHITTY_CHAT_BIN with uncommitted changes, it renders the working tree and the report says so.
#
# Typst compiles in a scratch directory that holds everything the report reads (its source, the run, the
# diagrams, the code it quotes), so OUT_DIR may be anywhere, a temporary directory included, and nothing
# outside OUT_DIR is written (but for cargo's target directory and the Typst install below).
#
# Needs cargo, git, python3 and jq. The Typst compiler is PyPI's `typst` package (pinned, TYPST_VERSION
# below), which ships the compiler in a wheel: it is installed with pip, when missing, into a virtual
# environment in ~/.cache/chitty-chat (CHITTY_TYPST_VENV overrides where), in seconds. jq is installed
# with apt-get when missing.
set -euo pipefail

# The Typst compiler's Python package, pinned: a new version may lay the report out differently.
TYPST_VERSION=0.15.2

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

fail() {
    echo "build-report: $*" >&2
    exit 1
}
say() {
    echo "build-report: $*" >&2
}

repo_url="${CHITTY_REPORT_REPO_URL:-}"
authors="${CHITTY_REPORT_AUTHORS:-}"
out=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --repo-url) [[ $# -ge 2 ]] || fail "--repo-url needs a URL"; repo_url="$2"; shift 2 ;;
        --repo-url=*) repo_url="${1#*=}"; shift ;;
        --authors) [[ $# -ge 2 ]] || fail "--authors needs the names"; authors="$2"; shift 2 ;;
        --authors=*) authors="${1#*=}"; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) fail "unknown option $1 (see --help)" ;;
        *) [[ -z "$out" ]] || fail "one OUT_DIR only, got $out and $1"; out="$1"; shift ;;
    esac
done
out="${out:-$repo/docs/report}"
# A link is a URL, never a path of this machine: a remote that is a local directory is no link.
case "$repo_url" in
    http://* | https://* | ssh://* | git://* | git@*) ;;
    "") ;;
    *) say "ignoring the repository link '$repo_url': not a URL (http(s)://, ssh://, git://, git@)"; repo_url="" ;;
esac

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# --- tools -------------------------------------------------------------------------------------------

export PATH="$HOME/.cargo/bin:$PATH"

command -v cargo > /dev/null || fail "cargo is needed; install the Rust toolchain (https://rustup.rs)"
command -v git > /dev/null || fail "git is needed: apt-get install -y git"
command -v python3 > /dev/null || fail "python3 is needed for the Typst compiler: apt-get install -y python3 python3-venv"

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

typst_venv="${CHITTY_TYPST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/chitty-chat/typst-$TYPST_VERSION}"
typst_python="$typst_venv/bin/python"
if ! "$typst_python" -c "import typst, importlib.metadata as m; assert m.version('typst') == '$TYPST_VERSION'" 2> /dev/null; then
    say "installing the Typst compiler (PyPI typst==$TYPST_VERSION) into $typst_venv"
    { python3 -m venv "$typst_venv" && "$typst_python" -m pip install -q "typst==$TYPST_VERSION"; } ||
        fail "could not install typst==$TYPST_VERSION with pip into $typst_venv"
fi

# --- which code ----------------------------------------------------------------------------------------

# The code that runs and is quoted comes from $source: the checkout itself, or a snapshot of its commit.
source="$repo"
target="$repo/target"
commit=""
commit_date=""
dirty=false
if git -C "$repo" rev-parse --git-dir > /dev/null 2>&1; then
    if [[ -z "$repo_url" ]]; then
        origin="$(git -C "$repo" remote get-url origin 2> /dev/null || true)"
        case "$origin" in
            http://* | https://* | ssh://* | git://* | git@*) repo_url="$origin" ;;
            *) ;;
        esac
    fi
    commit="$(git -C "$repo" rev-parse HEAD)"
    commit_date="$(git -C "$repo" log -1 --format=%cs HEAD)"
    # Changes to what is built or rendered count; the tests and this script do not.
    changed="$(git -C "$repo" status --porcelain --untracked-files=no -- \
        crates proto Cargo.toml Cargo.lock docs/report/report.typ ':(exclude)crates/*/tests/**')"
    if [[ -n "$changed" ]]; then
        if [[ -n "${CHITTY_CHAT_BIN:-}" ]]; then
            # The binary given was probably built from those changes; the report says so.
            dirty=true
        else
            say "the code or the report has uncommitted changes; building and rendering commit ${commit:0:12} as committed"
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

# The code the report quotes, copied whole; the report picks its excerpt by content, so an excerpt that
# no longer matches the code stops the build.
quoted_sources=(
    crates/chitty-core/src/lamport.rs
)

# How the report names where the run is kept: relative to the repository when it is inside it.
case "$run" in
    "$repo"/*) run_dir="${run#"$repo"/}" ;;
    *) run_dir="run" ;;
esac

stage="$scratch/stage"
mkdir -p "$stage"
cp "$source/docs/report/report.typ" "$stage/report.typ"
cp -R "$run" "$stage/run"
for quoted in "${quoted_sources[@]}"; do
    mkdir -p "$stage/src/$(dirname "$quoted")"
    cp "$source/$quoted" "$stage/src/$quoted"
done
jq -n \
    --arg repo_url "$repo_url" \
    --arg authors "$authors" \
    --arg commit "$commit" \
    --arg commit_date "$commit_date" \
    --argjson dirty "$dirty" \
    --arg late "$late" \
    --arg crashed "$crashed" \
    --arg run_dir "$run_dir" \
    '$ARGS.named' > "$stage/meta.json"

say "rendering $out/report.pdf with Typst $TYPST_VERSION (PyPI typst)"
# A fixed creation date: the PDF changes only when what it shows does.
"$typst_python" - "$stage" "$out/report.pdf" "${commit_date:-1970-01-01}" << 'PYTHON' ||
import datetime, sys, typst
stage, output, day = sys.argv[1:4]
when = datetime.datetime.fromisoformat(day + "T00:00:00+00:00")
typst.compile(stage + "/report.typ", output=output, root=stage, timestamp=when)
PYTHON
    fail "typst could not render the report (see the error above)"
say "done: $out/report.pdf, from the run logged in $logs"
