#!/usr/bin/env bash
# Builds the `strom:local` image from nothing (no registry, no base image): the Strom
# binaries, the shared libraries ldd says they need, and a static busybox (a shell and wget
# for healthchecks), on `FROM scratch` (docker/Dockerfile.scratch).
#   scripts/build-image.sh [--debug] [--tag strom:local]
# --debug packs the debug build (what the test suite already compiled; stripped) instead of
# building release binaries, which costs a second RocksDB build (~25 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
tag=strom:local
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug; shift ;;
    --tag) tag=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
scripts/setup.sh --no-python
if ! dpkg -s busybox-static >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q busybox-static >/dev/null
fi
source scripts/env.sh
bins=(strom-broker strom-quorum strom)
if [ "$profile" = release ]; then
  RUSTFLAGS="$(release_rustflags)" cargo build --release "${bins[@]/#/--bin=}"
else
  cargo build "${bins[@]/#/--bin=}"
fi
dir="$CARGO_TARGET_DIR/$profile"

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/usr/local/bin" "$root/bin" "$root/etc" "$root/tmp" "$root/data"
for b in "${bins[@]}"; do
  cp "$dir/$b" "$root/usr/local/bin/$b"
  strip --strip-debug "$root/usr/local/bin/$b"
  # Every library the binary links, at the path the dynamic loader expects.
  ldd "$dir/$b" | awk '/=>/ && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' |
    while read -r lib; do cp --parents -L -n "$lib" "$root"; done
done
cp /bin/busybox "$root/bin/busybox"
for applet in sh wget nc ls cat ps kill sleep env grep; do ln -s busybox "$root/bin/$applet"; done
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
echo 'root:x:0:0:root:/data:/bin/sh' > "$root/etc/passwd"
cp docker/Dockerfile.scratch "$ctx/Dockerfile"
docker build -q -t "$tag" "$ctx"
echo "built $tag ($profile binaries): $(docker image inspect "$tag" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
