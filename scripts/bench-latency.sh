#!/usr/bin/env bash
# Produce latency at a low steady rate on one release strom-broker --dev (issue #15's target:
# p99 at 1,000 msg/s within 1 ms): Strom's perf client sends one 100-byte record per request,
# 1,000 requests/s, acks=all, and prints per-request latency p50/p99/p99.9.
#   scripts/bench-latency.sh [--seconds 60] [--rate 1000] [--bin-dir DIR]
# --bin-dir uses binaries built elsewhere instead of building the release ones here.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60 rate=1000 bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --bin-dir) bin=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
scripts/setup.sh --no-python >/dev/null
source scripts/env.sh
if [ -z "$bin" ]; then
  RUSTFLAGS="$(release_rustflags)" cargo build --release --bin strom-broker --bin strom
  bin="$CARGO_TARGET_DIR/release"
fi
data=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
port=$((20000 + RANDOM % 10000))
start_dev_broker "$bin/strom-broker" "$data" "$port"
strom() { "$bin/strom" --bootstrap-server "127.0.0.1:$port" "$@"; }
strom topics create latency --partitions 1 > /dev/null
echo "release strom-broker --dev on $(nproc) cores; $rate records/s for $seconds s, one per request"
echo "== acks=all"
strom perf produce --topic latency --acks -1 --records $((rate * seconds)) --record-size 100 \
  --batch-records 1 --throughput "$rate"
echo "== acks=1"
strom perf produce --topic latency --acks 1 --records $((rate * seconds)) --record-size 100 \
  --batch-records 1 --throughput "$rate"
