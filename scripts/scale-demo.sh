#!/usr/bin/env bash
# Scaling the compose cluster without interruption, under an acks=all idempotent producer
# and a consumer group (scripts/rolling_check.py checks them afterwards: nothing lost,
# duplicated or reordered, no client error beyond retriable ones):
#   1. a fourth broker container joins (docker/compose.scale.yml), empty;
#   2. every topic is rebalanced over brokers 1-4 (`strom partitions reassign --generate`,
#      `--execute`, then `--verify` until done);
#   3. broker 1 is decommissioned (`strom cluster decommission 1`: its replicas move to the
#      others, then it is unregistered) and its container stopped.
# Prints a timeline. Needs the compose cluster up (docker-compose up -d) and the image.
#   scripts/scale-demo.sh            # the whole demo under load
#   scripts/scale-demo.sh --steps    # the three steps alone, no load
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/compose.sh
bootstrap=127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094

if [ "${1:-}" != "--steps" ]; then
  py=.venv/bin/python
  [ -x "$py" ] || py=python3
  exec "$py" scripts/rolling_check.py "$bootstrap" --label scale-check -- "$0" --steps
fi

compose=($COMPOSE -f docker-compose.yml -f docker/compose.scale.yml)
strom=(docker run --rm -i --network host -v "$PWD/target/scale-demo:/work" --entrypoint /usr/local/bin/strom strom:local
       --bootstrap-server "$bootstrap,127.0.0.1:19095")
mkdir -p target/scale-demo
t0=$(date +%s.%N)
say() { printf 'scale-demo: %6.1fs %s\n' "$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{print a-b}')" "$*"; }
health() { docker inspect -f '{{.State.Health.Status}}' "$("${compose[@]}" ps -q "$1")" 2>/dev/null || echo none; }

say "broker-4: starting"
"${compose[@]}" up -d broker-4 >/dev/null 2>&1
for i in $(seq 1 150); do
  [ "$(health broker-4)" = healthy ] && break
  [ "$i" = 150 ] && { echo "scale-demo: broker-4 did not become ready" >&2; exit 1; }
  sleep 1
done
say "broker-4: ready (registered, empty)"

topics=$(curl -sf http://127.0.0.1:19645/v1/topics | python3 -c 'import json,sys; print(",".join(t["name"] for t in json.load(sys.stdin)))')
say "rebalancing over 1,2,3,4: $topics"
"${strom[@]}" partitions reassign --generate --topics "$topics" --broker-list 1,2,3,4 \
  | sed -n '/Proposed partition reassignment configuration/{n;p}' > target/scale-demo/plan.json
moves=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["partitions"]))' target/scale-demo/plan.json)
"${strom[@]}" partitions reassign --execute --reassignment-json-file /work/plan.json >/dev/null
say "rebalance: $moves partition(s) submitted"
for i in $(seq 1 600); do
  "${strom[@]}" partitions reassign --verify --reassignment-json-file /work/plan.json >/dev/null 2>&1 && break
  [ "$i" = 600 ] && { echo "scale-demo: the rebalance did not finish" >&2; exit 1; }
  sleep 0.5
done
on4=$(curl -sf http://127.0.0.1:19647/v1/replicas | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
say "rebalance: done; broker 4 holds $on4 replica(s)"
[ "$on4" -gt 0 ] || { echo "scale-demo: broker 4 got nothing" >&2; exit 1; }

say "decommissioning broker 1"
"${strom[@]}" cluster decommission 1 | sed 's/^/scale-demo:        /'
left=$(curl -sf http://127.0.0.1:19645/v1/topics | python3 -c '
import json, sys, urllib.request
n = 0
for t in json.load(sys.stdin):
    doc = json.load(urllib.request.urlopen("http://127.0.0.1:19645/v1/topics/" + t["name"]))
    n += sum(1 in p["replicas"] for p in doc["partitions"])
print(n)')
[ "$left" = 0 ] || { echo "scale-demo: $left partition(s) still name broker 1" >&2; exit 1; }
"${compose[@]}" stop -t 60 broker-1 >/dev/null 2>&1
brokers=$(curl -sf http://127.0.0.1:19645/v1/brokers | python3 -c 'import json,sys; print(",".join(str(b["id"]) for b in json.load(sys.stdin)))')
say "broker-1: stopped; the cluster's brokers are now $brokers"
[ "$brokers" = "2,3,4" ] || { echo "scale-demo: expected brokers 2,3,4" >&2; exit 1; }
say "done"
