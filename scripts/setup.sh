#!/usr/bin/env bash
# Installs what building and testing Strom needs on a fresh Debian machine, idempotently:
#   - libclang (bindgen for RocksDB's bindings), a C++ compiler, kcat, openssl (the security
#     tests make their certificates with it), prometheus (the metrics tests scrape with it),
#     chromium (the console tests drive it headless), kubectl (Debian's kubernetes-client,
#     unless a kubectl is installed: the Kubernetes manifests are rendered with its kustomize),
#     sccache (when available)
#   - a Python venv at .venv with the real Kafka clients used by the compatibility tests
# Usage: scripts/setup.sh [--no-python]
set -euo pipefail
cd "$(dirname "$0")/.."

want_python=1
[ "${1:-}" = "--no-python" ] && want_python=0

need=()
for pkg in libclang-dev clang g++ kcat python3-venv curl openssl prometheus chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v sccache >/dev/null 2>&1 || need+=(sccache)
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q >/dev/null
  # sccache is optional: try it on its own so its absence never blocks the rest.
  core=()
  for p in "${need[@]}"; do [ "$p" != sccache ] && core+=("$p"); done
  if [ ${#core[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${core[@]}" >/dev/null
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q sccache >/dev/null 2>&1 \
    || echo "setup: sccache unavailable, building without a compiler cache"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

if [ "$want_python" = 1 ]; then
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  stamp=.venv/.requirements.sha
  sum=$(sha256sum integration-tests/python/requirements.txt | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    .venv/bin/pip install -q --disable-pip-version-check -r integration-tests/python/requirements.txt
    echo "$sum" > "$stamp"
  fi
fi
