#!/usr/bin/env bash
# What transactions cost, on one release `strom-broker --dev` (one partition, 100-byte
# records, 1000-record batches, acks=all), with Strom's own perf client:
#   1. idempotent produce (a producer id and sequences, no transactions),
#   2. transactional produce in transactions of 1,000 records (one batch each),
#   3. transactional produce in transactions of 100,000 records,
#   4. consuming the transactional data read_uncommitted, read_committed, and read_uncommitted
#      again (warm, as read_committed is).
# Each line is the perf client's own output. Prints the broker's peak RSS at the end.
# The client uses transaction version 2 (KIP-890 part 2), which a new cluster finalizes;
# --release-version 3.9 starts the broker at Kafka 3.9's metadata, where it uses version 1
# (AddPartitionsToTxn per transaction, no epoch bump).
#   scripts/bench-transactions.sh [--records N] [--bin-dir DIR] [--release-version R]
set -euo pipefail
cd "$(dirname "$0")/.."
records=2000000
bin=""
release=()
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records=$2; shift 2 ;;
    --bin-dir) bin=$2; shift 2 ;;
    --release-version) release=(--release-version "$2"); shift 2 ;;
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
broker_pid=""
cleanup() {
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
"$bin/strom-broker" --dev --data-dir "$data/b" --kafka-listen "127.0.0.1:$base" \
  --http-listen "127.0.0.1:$((base + 1))" --quorum-listen "127.0.0.1:$((base + 2))" \
  "${release[@]}" > "$data/broker.log" 2>&1 &
broker_pid=$!
for _ in $(seq 1 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$base") 2>/dev/null && break
  sleep 0.1
done
strom() { "$bin/strom" --bootstrap-server "127.0.0.1:$base" "$@"; }
for t in idem txn1k txn100k; do
  strom topics create "$t" --partitions 1 >/dev/null
done
common=(--records "$records" --record-size 100 --acks -1 --batch-records 1000)
echo "== idempotent"
strom perf produce --topic idem "${common[@]}" --idempotent
echo "== transactional, 1,000 records per transaction"
strom perf produce --topic txn1k "${common[@]}" --transactional-id bench-1k --transaction-records 1000
echo "== transactional, 100,000 records per transaction"
strom perf produce --topic txn100k "${common[@]}" --transactional-id bench-100k --transaction-records 100000
# read_uncommitted twice: the first read warms the caches for the ones after it.
for level in read_uncommitted read_committed read_uncommitted; do
  echo "== consume the 1,000-record transactions, $level"
  strom perf consume --topic txn1k --records "$records" --isolation-level "$level"
done
echo "broker peak RSS: $(grep VmHWM "/proc/$broker_pid/status" | awk '{print $2, $3}')"
