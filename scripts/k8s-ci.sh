#!/usr/bin/env bash
# The Kubernetes checks CI runs (scripts/test.sh calls this after the compose checks):
#   1. every overlay of deploy/kubernetes renders with `kubectl kustomize`, validates against
#      the Kubernetes 1.30 schemas offline (kubernetes-validate --strict), and keeps the
#      invariants scripts/k8s_check.py checks;
#   2. the production overlay runs as containers the way its StatefulSets would
#      (scripts/k8s_compose.py: pod hostnames, pod DNS names, the pods' env), and a rolling
#      restart of the brokers under an idempotent acks=all producer and a consumer group loses,
#      duplicates and reorders nothing (scripts/rolling_check.py).
#   scripts/k8s-ci.sh [--render-only] [--release]
# Needs the image (scripts/build-image.sh) for step 2 and the binaries for step 1.
set -euo pipefail
cd "$(dirname "$0")/.."
render_only=0
profile=debug
for a in "$@"; do
  case "$a" in
    --render-only) render_only=1 ;;
    --release) profile=release ;;
    *) echo "unknown argument $a" >&2; exit 2 ;;
  esac
done
[ -x .venv/bin/python ] || scripts/setup.sh
source scripts/env.sh
bin="$CARGO_TARGET_DIR/$profile"
out=$(mktemp -d)
passed=0

echo "== k8s: render, validate, invariants"
for overlay in dev production secured; do
  kubectl kustomize "deploy/kubernetes/overlays/$overlay" > "$out/$overlay.yaml"
  .venv/bin/kubernetes-validate --strict --quiet -k 1.30.0 "$out/$overlay.yaml"
  .venv/bin/python scripts/k8s_check.py "$out/$overlay.yaml" \
    --broker-bin "$bin/strom-broker" --quorum-bin "$bin/strom-quorum"
  passed=$((passed + 1))
done
if [ "$render_only" = 1 ]; then
  echo "k8s: $passed passed"
  exit 0
fi

echo "== k8s: the production StatefulSets as containers, rolling restart under load"
export STROM_COMPOSE_PROJECT=strom-k8s
source scripts/compose.sh
.venv/bin/python scripts/k8s_compose.py "$out/production.yaml" "$out/pods"
pods=($COMPOSE -f "$out/pods/compose.yml")
trap '"${pods[@]}" down -v >/dev/null 2>&1 || true; rm -rf "$out"' EXIT
"${pods[@]}" down -v >/dev/null 2>&1 || true
"${pods[@]}" up -d
for i in $(seq 1 150); do
  n=$("${pods[@]}" ps 2>/dev/null | grep -c '(healthy)' || true)
  [ "$n" -eq 6 ] && break
  [ "$i" = 150 ] && { "${pods[@]}" ps; "${pods[@]}" logs --tail 30; echo "k8s: pods not ready" >&2; exit 1; }
  sleep 1
done
# Ids came from the hostnames: strom-broker-N is broker N, strom-controller-N is voter N.
for n in 0 1 2; do
  id=$("${pods[@]}" exec -T "strom-broker-$n" wget -q -O - http://127.0.0.1:9644/readyz \
    | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["checks"]["node_id"])')
  [ "$id" = "$n" ] || { echo "k8s: strom-broker-$n has node id $id" >&2; exit 1; }
done
for n in 0 1 2; do
  "${pods[@]}" exec -T "strom-controller-$n" wget -q -O - http://127.0.0.1:9093/v1/cluster \
    | .venv/bin/python -c '
import json, sys
n = int(sys.argv[1])
doc = json.load(sys.stdin)
assert doc["node_id"] == n, ("strom-controller", n, "has node id", doc["node_id"])
assert sorted(v["id"] for v in doc["voters"]) == [0, 1, 2], doc["voters"]' "$n"
done
# Racks came from the zone label: strom-broker-N landed in zone-{a,b,c}[N].
"${pods[@]}" exec -T strom-broker-0 wget -q -O - http://127.0.0.1:9644/v1/brokers \
  | .venv/bin/python -c '
import json, sys
racks = {b["id"]: b["rack"] for b in json.load(sys.stdin)}
assert racks == {0: "zone-a", 1: "zone-b", 2: "zone-c"}, racks'
passed=$((passed + 1)); echo "k8s: six pods ready, ids from their hostnames, racks from their zones"

# The client on the host resolves the pods' DNS names (what the brokers advertise) through a
# hosts file in a private mount namespace.
bootstrap=strom-broker-0.strom-broker.default.svc:9092,strom-broker-1.strom-broker.default.svc:9092
# Like a StatefulSet, the roll trusts readiness alone (no in-sync check before each stop),
# and the producer's message timeout (8 s) is below the session timeout (9 s): deliveries fail
# unless SIGTERM hands leadership over. Needs root (unshare --mount), as CI runs.
STROM_ROLL_TRUST_READINESS=1 unshare --mount --propagation private sh -c \
  "mount --bind '$out/pods/hosts' /etc/hosts && \
  exec .venv/bin/python scripts/rolling_check.py '$bootstrap' --message-timeout-ms 8000 -- \
  scripts/rolling-restart.sh -f '$out/pods/compose.yml' strom-broker-2 strom-broker-1 strom-broker-0"
# Every broker's controlled shutdown completed (its image showed the handover).
for n in 0 1 2; do
  # Read whole first: grep -q closing the pipe early would fail it under pipefail.
  logs=$("${pods[@]}" logs "strom-broker-$n" 2>&1)
  grep -q 'controlled shutdown: leaderships handed over' <<<"$logs" \
    || { echo "k8s: strom-broker-$n did not complete a controlled shutdown" >&2; exit 1; }
  grep -q 'controlled shutdown requested over HTTP (preStop)' <<<"$logs" \
    || { echo "k8s: strom-broker-$n's preStop hook did not trigger it" >&2; exit 1; }
done
passed=$((passed + 1))
echo "k8s: $passed passed"
