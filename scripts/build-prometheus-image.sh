#!/usr/bin/env bash
# Builds `strom-prometheus:local` from nothing (no registry, no base image): Debian's
# `prometheus` binary, the libraries ldd says it needs, and Strom's scrape config
# (docker/prometheus/prometheus.yml), on `FROM scratch`. docker/compose.prometheus.yml runs it.
#   scripts/build-prometheus-image.sh [--tag strom-prometheus:local]
set -euo pipefail
cd "$(dirname "$0")/.."
tag=strom-prometheus:local
[ "${1:-}" = "--tag" ] && tag=$2
if ! command -v prometheus >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q prometheus >/dev/null
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/bin" "$root/etc/prometheus" "$root/prometheus" "$root/tmp"
bin=$(command -v prometheus)
cp "$bin" "$root/bin/prometheus"
ldd "$bin" | awk '/=>/ && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' |
  while read -r lib; do cp --parents -L -n "$lib" "$root"; done
cp docker/prometheus/prometheus.yml "$root/etc/prometheus/prometheus.yml"
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus", "--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=0.0.0.0:9090"]
DOCKERFILE
docker build -q -t "$tag" "$ctx" >/dev/null
echo "built $tag: $(docker image inspect "$tag" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
