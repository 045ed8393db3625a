#!/usr/bin/env bash
# Produce/consume throughput of a release strom-broker under librdkafka load (one partition,
# 100-byte records, acks=1 by default), plus the broker's peak RSS.
#   scripts/bench.sh [--records N] [--record-size B] [--acks 1|all] [--compression none|lz4|...]
# Builds the release broker and the librdkafka-based load generator (scripts/bench) first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --no-python
source scripts/env.sh
build_release_bench

data=$(mktemp -d)
port=$((20000 + RANDOM % 10000))
start_dev_broker "$CARGO_TARGET_DIR/release/strom-broker" "$data" "$port"
echo "strom-broker pid $pid on 127.0.0.1:$port ($(nproc) cores)"
"$CARGO_TARGET_DIR/release/strom-bench" --bootstrap "127.0.0.1:$port" --topic bench "$@"
echo "broker peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2/1024 " MiB"}'), now: $(grep VmRSS /proc/$pid/status | awk '{print $2/1024 " MiB"}')"
