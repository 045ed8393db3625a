#!/usr/bin/env bash
# Produce/consume throughput of a release strom-broker under librdkafka load (one partition,
# 100-byte records, acks=1 by default), plus the broker's peak RSS.
#   scripts/bench.sh [--records N] [--record-size B] [--acks 1|all] [--compression none|lz4|...]
# Builds the release broker and the librdkafka-based load generator (scripts/bench) first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --no-python
source scripts/env.sh
RUSTFLAGS="$(release_rustflags)" cargo build --release --bin strom-broker --bin strom
(cd scripts/bench && cargo build --release)

data=$(mktemp -d)
port=$((20000 + RANDOM % 10000))
"$CARGO_TARGET_DIR/release/strom-broker" --dev --data-dir "$data" \
  --kafka-listen "127.0.0.1:$port" --http-listen "127.0.0.1:$((port + 1))" --quorum-listen "127.0.0.1:$((port + 2))" > "$data.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data" "$data.log"' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
echo "strom-broker pid $pid on 127.0.0.1:$port ($(nproc) cores)"
"$CARGO_TARGET_DIR/release/strom-bench" --bootstrap "127.0.0.1:$port" --topic bench "$@"
echo "broker peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2/1024 " MiB"}'), now: $(grep VmRSS /proc/$pid/status | awk '{print $2/1024 " MiB"}')"
