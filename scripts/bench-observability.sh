#!/usr/bin/env bash
# What observability costs, on release `strom-broker --dev` with Strom's own perf client:
#   1. produce with metrics recording on and off (--metrics-enabled), alternating for
#      --rounds rounds, each phase on a fresh broker and data directory: 1 KB records in
#      100-record batches, and 100 B records in 10-record batches (many small requests, where
#      a per-request cost shows most);
#   2. console and /metrics render times with a 1,000-partition topic: each page fetched
#      --fetches times with curl, the median and slowest time_total reported.
#   scripts/bench-observability.sh [--records N] [--rounds R] [--fetches F] [--bin-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
records=500000
rounds=3
fetches=20
bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --fetches) fetches=$2; shift 2 ;;
    --bin-dir) bin=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  scripts/setup.sh --no-python
  source scripts/env.sh
  RUSTFLAGS="$(release_rustflags)" cargo build --release --bin strom-broker --bin strom
  bin="$CARGO_TARGET_DIR/release"
fi

data=$(mktemp -d)
base=$((20000 + RANDOM % 10000))
http="127.0.0.1:$((base + 8))"
broker_pid=""
stop_broker() {
  if [ -n "$broker_pid" ]; then
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=""
  fi
}
trap 'stop_broker; rm -rf "$data"' EXIT

start_broker() { # extra flags...
  rm -rf "$data/b"
  "$bin/strom-broker" --dev --data-dir "$data/b" --quorum-listen "127.0.0.1:$((base + 9))" \
    --http-listen "$http" --kafka-listen "127.0.0.1:$base" "$@" > "$data/broker.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 1 300); do
    curl -sf "http://$http/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
}
strom() { "$bin/strom" -b "127.0.0.1:$base" "$@"; }

for round in $(seq 1 "$rounds"); do
  for enabled in true false; do
    start_broker --metrics-enabled "$enabled"
    strom topics create big --partitions 1 >/dev/null
    strom topics create small --partitions 1 >/dev/null
    echo "== metrics recording $enabled (round $round, fresh broker): 1 KB x 100/batch, then 100 B x 10/batch"
    strom perf produce --topic big --records "$records" --record-size 1024 --acks 1 --batch-records 100
    strom perf produce --topic small --records "$records" --record-size 100 --acks 1 --batch-records 10
    stop_broker
  done
done

start_broker
strom topics create wide --partitions 1000 >/dev/null
strom perf produce --topic wide --records 100000 --record-size 100 --acks 1 --batch-records 10 >/dev/null
echo "== render times with a 1,000-partition topic ($fetches fetches each; median / slowest, ms)"
for path in /ui/cluster /ui/topics /ui/topics/wide "/ui/topics/wide/messages?partition=7" /ui/events /metrics; do
  times=$(for _ in $(seq 1 "$fetches"); do
    curl -s -o /dev/null -w '%{time_total}\n' "http://$http$path"
  done | sort -n)
  median=$(echo "$times" | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)] * 1000}')
  slowest=$(echo "$times" | tail -1 | awk '{printf "%.1f", $1 * 1000}')
  size=$(curl -s "http://$http$path" | wc -c)
  echo "$path: $median / $slowest ms ($size bytes)"
done
