#!/usr/bin/env bash
# What replication costs: one controller and three release brokers on this machine, then
#   1. RF=1 acks=1 throughput, 2. RF=3 acks=all (min.insync.replicas=2) throughput, the same
#      load with Strom's own perf client (one partition, 100-byte records, 2000-record batches),
#   3. RF=3 acks=all latency at 1,000 records/s, one record per request.
#   scripts/bench-replication.sh [--records N] [--bin-dir DIR]
# --bin-dir uses binaries built elsewhere instead of building the release ones here.
set -euo pipefail
cd "$(dirname "$0")/.."
records=5000000
bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records=$2; shift 2 ;;
    --bin-dir) bin=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  scripts/setup.sh --no-python
  source scripts/env.sh
  RUSTFLAGS="$(release_rustflags)" cargo build --release --bin strom-broker --bin strom-quorum --bin strom
  bin="$CARGO_TARGET_DIR/release"
fi

data=$(mktemp -d)
base=$((20000 + RANDOM % 10000))
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  exit 1
}

quorum="127.0.0.1:$base"
"$bin/strom-quorum" --node-id 1 --data-dir "$data/c1" --listen "$quorum" --voters "1@$quorum" \
  > "$data/c1.log" 2>&1 &
pids+=($!)
wait_port "$base"
for i in 1 2 3; do
  port=$((base + 10 * i))
  "$bin/strom-broker" --node-id "$i" --quorum "$quorum" --data-dir "$data/b$i" \
    --kafka-listen "127.0.0.1:$port" --http-listen "127.0.0.1:$((port + 1))" \
    > "$data/b$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2 3; do wait_port $((base + 10 * i)); done
boot="127.0.0.1:$((base + 10))"
strom() { "$bin/strom" --bootstrap-server "$boot" "$@"; }
# Registration is asynchronous: retry until three brokers are there to hold RF=3.
for _ in $(seq 1 100); do
  strom topics create rf3 --partitions 1 --replication-factor 3 --config min.insync.replicas=2 \
    > /dev/null 2>&1 && break
  sleep 0.2
done
strom topics create rf1 --partitions 1 --replication-factor 1 > /dev/null
sleep 1
echo "3 brokers + 1 controller on $(nproc) cores; $records records of 100 bytes"
echo "== RF=1 acks=1"
strom perf produce --topic rf1 --acks 1 --records "$records" --record-size 100 --batch-records 2000
echo "== RF=3 acks=all (min.insync.replicas=2)"
strom perf produce --topic rf3 --acks -1 --records "$records" --record-size 100 --batch-records 2000
echo "== RF=3 acks=all at 1000 records/s, one record per request (60 s)"
strom perf produce --topic rf3 --acks -1 --records 60000 --record-size 100 --batch-records 1 --throughput 1000
