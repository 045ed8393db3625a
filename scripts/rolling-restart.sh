#!/usr/bin/env bash
# A rolling restart of brokers in a compose cluster, the way a StatefulSet rolls: one at a
# time, each only when every partition it hosts is fully in sync elsewhere, stopped with
# SIGTERM (a controlled shutdown hands its leaderships over), started again, and waited for
# until its /readyz (healthcheck) passes, which holds until it is back in every ISR.
#   scripts/rolling-restart.sh [-f compose-file]... [SERVICE...]
# Default: the compose cluster's broker-3 broker-2 broker-1 (a StatefulSet rolls from the
# highest ordinal down). Prints a timeline; exits non-zero if a broker does not come back.
# STROM_ROLL_TRUST_READINESS=1 skips the in-sync check before each stop and relies on the
# restarted broker's /readyz alone, as a StatefulSet does.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/compose.sh
files=()
while [ "${1:-}" = "-f" ]; do files+=(-f "$2"); shift 2; done
[ ${#files[@]} -eq 0 ] && files=(-f docker-compose.yml)
services=("$@")
[ ${#services[@]} -eq 0 ] && services=(broker-3 broker-2 broker-1)
compose=($COMPOSE "${files[@]}")
grace=${STROM_ROLL_GRACE_SECONDS:-60}
t0=$(date +%s.%N)
say() { printf 'rolling-restart: %6.1fs %s\n' "$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{print a-b}')" "$*"; }

http() { # SERVICE PATH: GET from inside the container (the image's busybox wget)
  "${compose[@]}" exec -T "$1" wget -q -O - "http://127.0.0.1:9644$2"
}

# Partitions hosted by broker $2 that are not fully in sync, as seen by service $1; fails
# (rather than answering "none") when the answer cannot be read.
not_in_sync() {
  local via=$1 node=$2 topics names docs=""
  topics=$(http "$via" /v1/topics) || return 1
  names=$(echo "$topics" | python3 -c 'import json,sys; print(" ".join(t["name"] for t in json.load(sys.stdin)))') || return 1
  for t in $names; do
    docs+="$(http "$via" "/v1/topics/$t")"$'\n' || return 1
  done
  printf '%s' "$docs" | python3 -c '
import json, sys
node = int(sys.argv[1])
for line in sys.stdin:
    if not line.strip():
        continue
    doc = json.loads(line)
    for p in doc["partitions"]:
        if node in p["replicas"] and sorted(p["isr"]) != sorted(p["replicas"]):
            print("%s-%d isr=%s replicas=%s" % (doc["name"], p["partition"], p["isr"], p["replicas"]))
' "$node"
}

health() {
  docker inspect -f '{{.State.Health.Status}}' "$("${compose[@]}" ps -q "$1")" 2>/dev/null || echo none
}

for s in "${services[@]}"; do
  via=""
  for o in "${services[@]}"; do [ "$o" != "$s" ] && via=$o && break; done
  node=$(http "$s" /readyz | python3 -c 'import json,sys; print(json.load(sys.stdin)["checks"]["node_id"])') \
    || { echo "rolling-restart: $s is not ready before its restart" >&2; exit 1; }
  say "$s (broker $node): waiting until every partition it hosts is in sync"
  [ "${STROM_ROLL_TRUST_READINESS:-0}" = 1 ] && say "$s: not checked (trusting readiness)"
  for i in $(seq 1 240); do
    [ "${STROM_ROLL_TRUST_READINESS:-0}" = 1 ] && break
    lagging=$(not_in_sync "$via" "$node" || echo "unknown")
    [ -z "$lagging" ] && break
    [ "$i" = 240 ] && { echo "rolling-restart: $s: still out of sync: $lagging" >&2; exit 1; }
    sleep 0.5
  done
  # A preStop hook (the label scripts/k8s_compose.py copies from the pod spec) runs first,
  # as the kubelet runs it before SIGTERM.
  cid=$("${compose[@]}" ps -q "$s")
  pre_stop=$(docker inspect -f '{{ index .Config.Labels "io.strom.pre-stop" }}' "$cid" 2>/dev/null || true)
  if [ -n "$pre_stop" ] && [ "$pre_stop" != "<no value>" ]; then
    mapfile -t hook < <(python3 -c 'import json,sys; print("\n".join(json.loads(sys.argv[1])))' "$pre_stop")
    say "$s: preStop: ${hook[*]}"
    "${compose[@]}" exec -T "$s" "${hook[@]}" >/dev/null || say "$s: preStop failed (stopping anyway, as the kubelet does)"
  fi
  say "$s: stopping (SIGTERM, controlled shutdown, up to ${grace}s)"
  "${compose[@]}" stop -t "$grace" "$s" >/dev/null 2>&1
  say "$s: stopped; starting"
  "${compose[@]}" start "$s" >/dev/null 2>&1
  for i in $(seq 1 300); do
    [ "$(health "$s")" = healthy ] && break
    [ "$i" = 300 ] && { echo "rolling-restart: $s did not become ready" >&2; exit 1; }
    sleep 0.5
  done
  say "$s: ready (registered, caught up, back in every ISR)"
done
say "done: ${services[*]}"
