#!/usr/bin/env bash
# The docker compose checks CI runs (scripts/test.sh calls this): build the image from
# nothing, bring the six-node cluster up healthy, run the failover demo, a 60-second chaos run
# with a fixed seed, a canary chaos run that must fail, a chaos run with each broker's WAL on
# its container's tmpfs (a kill is a host crash), then `down` / `up` keeping the volumes
# (data must survive), a rolling restart under load, Prometheus, the secured cluster, and the
# Kubernetes manifests (scripts/k8s-ci.sh). Prints "compose: N passed" at the end.
#   scripts/compose-ci.sh [--release]   (default: the debug binaries the test suite built)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=--debug
[ "${1:-}" = "--release" ] && profile=""
source scripts/compose.sh
passed=0
trap '$COMPOSE -f docker-compose.yml -f docker/compose.scale.yml down -v >/dev/null 2>&1 || true' EXIT

wait_healthy() {
  for _ in $(seq 1 150); do
    local n
    n=$($COMPOSE ps 2>/dev/null | grep -c '(healthy)' || true)
    [ "$n" -eq 6 ] && return 0
    sleep 1
  done
  $COMPOSE ps
  echo "compose: the cluster did not become healthy" >&2
  return 1
}

echo "== compose: image"
scripts/build-image.sh $profile
$COMPOSE -f docker-compose.yml -f docker/compose.scale.yml down -v >/dev/null 2>&1 || true
$COMPOSE up -d
wait_healthy
curl -sf http://127.0.0.1:19644/v1/cluster >/dev/null
# Healthy is the /readyz probe: every node says why it is ready.
for port in 19644 19645 19646 19081 19082 19083; do
  curl -sf "http://127.0.0.1:$port/readyz" | grep -q '"status":"ready"' \
    || { echo "compose: /readyz on :$port is not ready" >&2; exit 1; }
done
passed=$((passed + 1)); echo "compose: 6 nodes healthy (ready)"

echo "== compose: failover demo"
scripts/failover-demo.sh
passed=$((passed + 1))

echo "== compose: chaos (seed 42, 60 s)"
scripts/chaos.sh --seed 42 --duration 60s
passed=$((passed + 1))

echo "== compose: canary chaos (must find lost writes)"
if scripts/chaos.sh --seed 3 --duration 30s --canary; then
  echo "compose: the canary run passed the checker: it would not notice lost writes" >&2
  exit 1
fi
passed=$((passed + 1)); echo "compose: the canary was caught"

echo "== compose: chaos with each broker's WAL on its container's tmpfs (seed 7, 60 s)"
# Every broker kill is then a host crash for the WAL (docker/compose.wal-tmpfs.yml); on empty
# volumes and with nothing flushed, a killed broker comes back holding no partition and
# fetches everything again, while nothing acknowledged may be lost.
$COMPOSE down -v >/dev/null 2>&1
scripts/chaos.sh --wal-tmpfs --seed 7 --duration 60s
# Each start's "partition logs recovered" count: all 0 (a WAL that outlived its container
# would bring back the partitions created since), and some broker started again.
restarted=0
for b in 1 2 3; do
  counts=$($COMPOSE logs --no-color "broker-$b" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' \
    | grep -oE 'partition logs recovered[^=]* partitions=[0-9]+' | grep -oE '[0-9]+$' || true)
  starts=$(echo "$counts" | grep -c . || true)
  [ "$starts" -ge 1 ] || { echo "compose: broker-$b logged no start" >&2; exit 1; }
  if echo "$counts" | grep -qv '^0$'; then
    echo "compose: broker-$b recovered partitions after a crash that took its WAL: $(echo $counts)" >&2
    exit 1
  fi
  [ "$starts" -ge 2 ] && restarted=$((restarted + 1))
  echo "compose: broker-$b started $starts times, each holding no partition"
done
[ "$restarted" -ge 1 ] || { echo "compose: no broker was killed and started again" >&2; exit 1; }
$COMPOSE down -v >/dev/null 2>&1
$COMPOSE up -d >/dev/null 2>&1
passed=$((passed + 1)); echo "compose: $restarted brokers lost their WAL with their container and nothing acknowledged was lost"

echo "== compose: data survives down / up"
wait_healthy
topic=persist-$$
strom=(docker run --rm -i --network host --entrypoint /usr/local/bin/strom strom:local --bootstrap-server 127.0.0.1:19092)
"${strom[@]}" topics create "$topic" --partitions 1 --replication-factor 3 --config min.insync.replicas=2 >/dev/null
seq 1 500 | "${strom[@]}" produce "$topic" --acks -1 >/dev/null
hw() { curl -sf "http://127.0.0.1:19644/v1/topics/$topic" | grep -o '"high_watermark":[0-9]*' | head -1 || true; }
# Polls broker 1's high watermark until it reads $1 (at most $2 tries); prints the last read.
# Broker 1 may be a follower, whose high watermark trails the leader's by a fetch.
hw_becomes() {
  local v=""
  for _ in $(seq 1 "$2"); do
    v=$(hw)
    [ "$v" = "$1" ] && break
    sleep 0.5
  done
  echo "$v"
}
before=$(hw_becomes '"high_watermark":500' 30)
$COMPOSE down
$COMPOSE up -d
wait_healthy
after=$(hw_becomes "$before" 120)
if [ "$before" != '"high_watermark":500' ] || [ "$after" != "$before" ]; then
  echo "compose: data did not survive down/up ($before -> $after)" >&2
  exit 1
fi
consumed=$("${strom[@]}" consume "$topic" --from-beginning --count 500 | wc -l)
[ "$consumed" -eq 500 ] || { echo "compose: read back $consumed of 500 records" >&2; exit 1; }
passed=$((passed + 1)); echo "compose: 500 records survived down / up"

echo "== compose: rolling restart under load (scripts/rolling-restart.sh)"
wait_healthy
.venv/bin/python scripts/rolling_check.py 127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094 -- \
  scripts/rolling-restart.sh
passed=$((passed + 1)); echo "compose: rolling restart lost, duplicated and reordered nothing"

echo "== compose: Prometheus scrapes every node"
scripts/build-prometheus-image.sh
PROM_COMPOSE="$COMPOSE -f docker-compose.yml -f docker/compose.prometheus.yml"
$PROM_COMPOSE up -d prometheus >/dev/null
query() { curl -sf --data-urlencode "query=$1" http://127.0.0.1:19090/api/v1/query || true; }
up=""
for _ in $(seq 1 60); do
  up=$(query 'sum(up)')
  echo "$up" | grep -q '"value":\[[0-9.]*,"6"\]' && break
  sleep 1
done
echo "$up" | grep -q '"value":\[[0-9.]*,"6"\]' \
  || { echo "compose: Prometheus does not see 6 targets up: $up" >&2; exit 1; }
query 'sum(kafka_controller_kafkacontroller_activecontrollercount)' | grep -q '"value":\[[0-9.]*,"1"\]' \
  || { echo "compose: Prometheus does not see exactly one active controller" >&2; exit 1; }
$PROM_COMPOSE rm -sf prometheus >/dev/null 2>&1
passed=$((passed + 1)); echo "compose: Prometheus scrapes 6 nodes, one active controller"

echo "== compose: scale out and decommission under load (scripts/scale-demo.sh)"
wait_healthy
scripts/scale-demo.sh
passed=$((passed + 1)); echo "compose: broker 4 added and rebalanced onto, broker 1 retired, nothing lost"

$COMPOSE -f docker-compose.yml -f docker/compose.scale.yml down -v >/dev/null

echo "== compose: secured cluster (SASL_SSL clients, TLS between brokers)"
scripts/compose-secure.sh
passed=$((passed + 1))

echo "== Kubernetes manifests (render, validate, invariants, StatefulSets as containers)"
k8s_args=()
[ -z "$profile" ] && k8s_args=(--release)
k8s=$(scripts/k8s-ci.sh "${k8s_args[@]}" | tee /dev/stderr | grep -Eo '^k8s: [0-9]+ passed' | awk '{print $2}')
passed=$((passed + k8s))

trap - EXIT
echo "compose: $passed passed"
