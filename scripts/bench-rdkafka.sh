#!/usr/bin/env bash
# Produce throughput under librdkafka's own rdkafka_performance, the client issue #15 measured
# with: a release strom-broker --dev, a topic with retention off, acks=all, linger 5 ms, the
# client's other settings as rdkafka_performance leaves them (its own 3 retries and 500 ms
# backoff, librdkafka's defaults otherwise). For each load (partitions x record size x records)
# it runs the producer --runs times on one broker and prints, per run, what rdkafka_performance
# reports, the client's CPU (user+system), and the broker's CPU, disk writes (write_bytes less
# cancelled_write_bytes) and RSS after the run.
#   scripts/bench-rdkafka.sh [--runs 2] [--loads "1x1000x2000000 8x1000x2000000 1x100x10000000 8x100x10000000"]
#                            [--pin]   (broker on CPU 1, client on CPU 0)
#                            [--null]  (against broker/examples/null_broker.rs instead: it
#                                       stores nothing, so its runs are the client's ceiling)
#                            [--wal-dir DIR]   (each broker's WAL in a fresh directory under DIR,
#                                               e.g. the /dev/shm tmpfs: --storage-wal-dir)
# STROM_BROKER_BIN=path runs that broker binary instead of the one just built (an A/B of two
# builds; not with --null); BENCH_DIR sets where the data directories go (/var/tmp).
# rdkafka_performance is compiled from the librdkafka tree that rdkafka-sys copies into its
# build directory (examples/rdkafka_performance.c), against the static library built there.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=2 pin=0 null=0 wal_parent=
loads="1x1000x2000000 8x1000x2000000 1x100x10000000 8x100x10000000"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --loads) loads=$2; shift 2 ;;
    --pin) pin=1; shift ;;
    --null) null=1; shift ;;
    --wal-dir) wal_parent=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

scripts/setup.sh --no-python >/dev/null
source scripts/env.sh
build_release_bench
bin="$CARGO_TARGET_DIR/release"
if [ "$null" = 1 ]; then
  # The same packages as build_release_bench, so nothing else is rebuilt.
  RUSTFLAGS="$(release_rustflags)" cargo build --release --bin strom-broker --bin strom --example null_broker
fi

build_rdkafka_performance
perf_bin=$rdkafka_performance
version=$("$perf_bin" -h 2>&1 | awk '/librdkafka version/ {print $3; exit}' || true)

cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
broker_pin=() client_pin=()
if [ "$pin" = 1 ]; then broker_pin=(taskset -c 1); client_pin=(taskset -c 0); fi
TIMEFORMAT='client CPU %U+%S s'

echo "rdkafka_performance (librdkafka $version); $(nproc) cores; acks=all, linger.ms=5$([ "$pin" = 1 ] && echo '; broker on CPU 1, client on CPU 0')$([ "$null" = 1 ] && echo '; NULL BROKER (stores nothing)')$([ -n "$wal_parent" ] && echo "; WAL under $wal_parent")"
for load in $loads; do
  IFS=x read -r partitions size count <<<"$load"
  data=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
  port=$((20000 + RANDOM % 10000))
  wal_args=() wal=
  if [ -n "$wal_parent" ]; then
    wal=$(mktemp -d -p "$wal_parent")
    wal_args=(--storage-wal-dir "$wal")
  fi
  if [ "$null" = 1 ]; then
    ${broker_pin[@]+"${broker_pin[@]}"} "$bin/examples/null_broker" "127.0.0.1:$port" bench "$partitions" >"$data.log" 2>&1 &
  else
    ${broker_pin[@]+"${broker_pin[@]}"} "${STROM_BROKER_BIN:-$bin/strom-broker}" --dev --data-dir "$data" --kafka-listen "127.0.0.1:$port" \
      --http-listen "127.0.0.1:$((port + 1))" --quorum-listen "127.0.0.1:$((port + 2))" \
      ${wal_args[@]+"${wal_args[@]}"} >"$data.log" 2>&1 &
  fi
  pid=$!
  # On a failure the broker's log stays, and is named.
  trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data" ${wal:+"$wal"}; echo "broker log: $data.log" >&2' EXIT
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  if [ "$null" = 0 ]; then
    "$bin/strom" --bootstrap-server "127.0.0.1:$port" topics create bench --partitions "$partitions" \
      --replication-factor 1 --config retention.ms=-1 --config retention.bytes=-1 >/dev/null
  fi
  echo "== $partitions partition(s), $size-byte records, $count per run"
  for r in $(seq 1 "$runs"); do
    cpu0=$(cpu_s "$pid") w0=$(disk_written "$pid")
    status=0
    out=$( { time ${client_pin[@]+"${client_pin[@]}"} "$perf_bin" -P -t bench \
      -b "127.0.0.1:$port" -s "$size" -c "$count" -a -1 -X linger.ms=5 -q; } 2>&1) || status=$?
    if [ "$status" != 0 ]; then
      echo "run $r: rdkafka_performance exited with $status:" >&2
      echo "$out" | tail -n 20 >&2
      exit 1
    fi
    out=$(echo "$out" | grep -E 'msgs/s|client CPU' | tr '\n' ' ')
    echo "run $r: ${out#% } | broker CPU $(awk -v a="$(cpu_s "$pid")" -v b="$cpu0" 'BEGIN {printf "%.2f", a - b}') s," \
      "disk written $(awk -v a="$(disk_written "$pid")" -v b="$w0" 'BEGIN {printf "%.2f", (a - b) / 1e9}') GB," \
      "RSS $(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status") MB"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$data" "$data.log" ${wal:+"$wal"}
  trap - EXIT
done
