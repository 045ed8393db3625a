#!/usr/bin/env bash
# The storage write path under sustained load: a release strom-broker --dev, a topic with
# retention off, and rounds of librdkafka produce (acks=all, linger 5 ms) by librdkafka's own
# rdkafka_performance, the client issue #15 set its targets with (or strom-bench, scripts/bench,
# the client of the figures before session 29, with --client strom-bench). Per round it prints
# the throughput, the bytes the broker wrote to disk per byte produced (/proc/<pid>/io
# write_bytes less cancelled_write_bytes: a WAL file deleted before the kernel wrote it back
# never reached the disk), the data directory's size, RSS, the broker's CPU so far and the
# client's in the round; at the end, after the writes stop, the data directory against the
# batches held, RocksDB's write stall totals and the writes that waited for memtable room
# (strom.memtable-waits), the produce requests that took over 50, 100 and 250 ms (the
# broker's request time histogram), RocksDB's flushes (from its LOG: per family kind, and
# why), the peaks of RSS, memtables and
# jemalloc's allocated and resident bytes (sampled from /proc and /metrics every 0.5 s while
# producing), and a consume pass.
#   scripts/bench-storage.sh [--partitions 8] [--rounds 5] [--records-per-round 1900000]
#                            [--record-size 1000] [--idle 20] [--no-consume]
#                            [--extra-partitions N]   (idle partitions besides the topic's)
#                            [--client rdkafka_performance|strom-bench]
#                            [--perf FILE]   (perf record -g of the broker during round 2)
#                            [--perf-consume FILE]   (perf record -g of the broker while consuming)
#                            [--wal-dir DIR]   (the WAL in a fresh directory under DIR, e.g. the
#                                               /dev/shm tmpfs: --storage-wal-dir, decision 0029)
# STROM_BROKER_BIN=path runs that broker binary instead of the one just built (an A/B of two
# builds); BENCH_DIR sets where the data directory goes (/var/tmp).
set -euo pipefail
cd "$(dirname "$0")/.."

partitions=8 rounds=5 records=1900000 size=1000 idle=20 consume=1 extra=0 perf_out= perf_consume=
client=rdkafka_performance wal_parent=
while [ $# -gt 0 ]; do
  case "$1" in
    --partitions) partitions=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --records-per-round) records=$2; shift 2 ;;
    --record-size) size=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    --no-consume) consume=0; shift ;;
    --extra-partitions) extra=$2; shift 2 ;;
    --perf) perf_out=$2; shift 2 ;;
    --perf-consume) perf_consume=$2; shift 2 ;;
    --client) client=$2; shift 2 ;;
    --wal-dir) wal_parent=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

scripts/setup.sh --no-python >/dev/null
source scripts/env.sh
build_release_bench
bin="$CARGO_TARGET_DIR/release"
case "$client" in
  rdkafka_performance) build_rdkafka_performance ;;
  strom-bench) ;;
  *) echo "unknown client $client (rdkafka_performance or strom-bench)" >&2; exit 2 ;;
esac

data=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
port=$((20000 + RANDOM % 10000))
http=$((port + 1))
wal=
if [ -n "$wal_parent" ]; then
  wal=$(mktemp -d -p "$wal_parent")
  export STROM_STORAGE_WAL_DIR=$wal
fi
start_dev_broker "${STROM_BROKER_BIN:-$bin/strom-broker}" "$data" "$port"
cli() { "$bin/strom" --bootstrap-server "127.0.0.1:$port" "$@"; }
cli topics create bench --partitions "$partitions" --replication-factor 1 \
  --config retention.ms=-1 --config retention.bytes=-1 >/dev/null
if [ "$extra" -gt 0 ]; then
  cli topics create idle --partitions "$extra" --replication-factor 1 >/dev/null
fi

written() { disk_written "$pid"; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$pid/stat"; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status"; }
dir_bytes() { du -sb "$data" | awk '{print $1}'; }
held_bytes() {
  curl -sf "http://127.0.0.1:$http/v1/topics/bench" | python3 -c '
import json, sys
def sizes(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "size_bytes": yield x
            else: yield from sizes(x)
    elif isinstance(v, list):
        for x in v: yield from sizes(x)
print(sum(sizes(json.load(sys.stdin))))'
}
gb() { awk -v b="$1" 'BEGIN {printf "%.2f", b / 1e9}'; }

echo "strom-broker pid $pid on 127.0.0.1:$port ($(nproc) cores), data in $data"
# Samples while producing, one line each: RSS, the partitions' memtables, and jemalloc's
# allocated and resident bytes (jemalloc is the whole process's malloc, RocksDB's included).
peaks="$data.peaks"
sample_peaks() {
  while kill -0 "$pid" 2>/dev/null; do
    {
      awk '/VmRSS/ {printf "%.0f ", $2 * 1024}' "/proc/$pid/status" 2>/dev/null
      curl -sf --max-time 2 "http://127.0.0.1:$http/metrics" | awk '
        /^strom_rocksdb_property\{property="rocksdb.cur-size-all-mem-tables"\}/ {m = $2}
        /^strom_allocator_bytes\{stat="allocated"\}/ {a = $2}
        /^strom_allocator_bytes\{stat="resident"\}/ {r = $2}
        END {printf "%.0f %.0f %.0f\n", m, a, r}'
    } >> "$peaks" || true
    sleep 0.5
  done
}
sample_peaks &
sampler=$!
client_cpu=$(mktemp)
trap 'kill $sampler $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "'"$data"'" "'"$data"'.log" "'"$peaks"'" "'"$client_cpu"'" ${wal:+"'"$wal"'"}' EXIT
echo "topic bench: $partitions partitions; $rounds rounds of $records records of $size B (acks=all, $client)"
[ -z "$wal" ] || echo "WAL directory: $wal ($(df --output=fstype "$wal" | tail -n 1))"
start_written=$(written)
produced=0
TIMEFORMAT='%U %S'
# One round's records, printed as "produce: N records in S s = R msg/s, T MB/s"; a record
# not delivered fails the benchmark.
produce_round() {
  if [ "$client" = strom-bench ]; then
    "$bin/strom-bench" --bootstrap "127.0.0.1:$port" --topic bench --acks all \
      --records "$records" --record-size "$size" --partitions "$partitions" --produce-only
    return
  fi
  local text got
  text=$("$rdkafka_performance" -P -t bench -b "127.0.0.1:$port" -s "$size" -c "$records" \
    -a -1 -X linger.ms=5 -q 2>&1) || { echo "$text" | tail -n 20 >&2; return 1; }
  # "% N messages produced (B bytes), D delivered (offset O, F failed) in Tms: R msgs/s and M MB/s"
  got=$(echo "$text" | sed -nE 's/.* ([0-9]+) delivered \(offset -?[0-9]+, ([0-9]+) failed\) in ([0-9]+)ms: ([0-9]+) msgs\/s and ([0-9.]+) MB\/s.*/\1 \2 \3 \4 \5/p')
  local delivered failed ms rate mbs
  read -r delivered failed ms rate mbs <<<"$got"
  if [ "${delivered:-0}" != "$records" ] || [ "${failed:-1}" != 0 ]; then
    echo "rdkafka_performance delivered ${delivered:-?} of $records records, ${failed:-?} failed:" >&2
    echo "$text" | tail -n 20 >&2
    return 1
  fi
  echo "produce: $delivered records in $(awk -v t="$ms" 'BEGIN {printf "%.2f", t / 1000}') s = $rate msg/s, $mbs MB/s"
}
for r in $(seq 1 "$rounds"); do
  before=$(written)
  perf_pid=
  if [ -n "$perf_out" ] && [ "$r" = 2 ]; then
    perf record -e cpu-clock -F 499 -g -p "$pid" -o "$perf_out" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  # The client's user and system CPU (bash's time; the client's own errors still reach stderr).
  { time out=$(produce_round 2>&3); } 3>&2 2>"$client_cpu"
  after=$(written)
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
  round_bytes=$((records * size))
  produced=$((produced + round_bytes))
  ratio=$(awk -v w=$((after - before)) -v p=$round_bytes 'BEGIN {printf "%.2f", w / p}')
  echo "round $r: ${out#produce: }; disk written $(gb $((after - before))) GB = ${ratio}x;" \
    "data dir $(gb "$(dir_bytes)") GB; RSS $(rss_mb) MB; broker CPU $(cpu_s) s;" \
    "client CPU this round $(awk 'END {printf "%.1f", $1 + $2}' "$client_cpu") s" \
    ${wal:+"; WAL dir $(du -sb "$wal" | awk '{printf "%.0f", $1 / 1048576}') MB"}
done
total=$(( $(written) - start_written ))
echo "total: produced $(gb $produced) GB of values, disk written $(gb $total) GB" \
  "= $(awk -v w=$total -v p=$produced 'BEGIN {printf "%.2f", w / p}')x"
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
# Each column's own maximum (printf: mawk prints numbers of 2^31 and more in exponent form).
awk 'NF == 4 {for (i = 1; i <= 4; i++) if ($i > m[i]) m[i] = $i}
  END {printf "peaks while producing (sampled every 0.5 s): RSS %.0f MB, memtables %.0f MB, " \
    "jemalloc allocated %.0f MB, resident %.0f MB\n", m[1] / 1048576, m[2] / 1048576,
    m[3] / 1048576, m[4] / 1048576}' "$peaks" 2>/dev/null || true
rm -f "$peaks"
sleep "$idle"
held=$(held_bytes)
dir=$(dir_bytes)
echo "after ${idle}s idle: data dir $(gb "$dir") GB for $(gb "$held") GB of batches held" \
  "= $(awk -v d="$dir" -v h="$held" 'BEGIN {printf "%.3f", d / h}')x; RSS $(rss_mb) MB," \
  "peak $(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status") MB"
# RocksDB logs its cumulative stall time once a minute only: a shorter run shows the last
# minute's figure, or none. The stop and delay counts come from the broker, read at the end.
grep -h "Cumulative stall" "$data"/logs/LOG 2>/dev/null | tail -n 1 | sed 's/^.*Cumulative/rocksdb (logged each minute): cumulative/' || true
curl -sf --max-time 2 "http://127.0.0.1:$http/metrics" | awk '
  /^strom_rocksdb_property\{property="strom.memtable-waits"\}/ {n = $2}
  /^strom_rocksdb_property\{property="strom.memtable-wait-micros"\}/ {us = $2}
  /^strom_rocksdb_property\{property="strom.write-stall-stops"\}/ {stops = $2}
  /^strom_rocksdb_property\{property="strom.write-stall-delays"\}/ {delays = $2}
  /^kafka_network_requestmetrics_totaltimems_(bucket|count)\{.*request="Produce"/ {
    if ($1 ~ /_count/) total = $2
    else if ($1 ~ /le="50(\.0)?"/) le50 = $2
    else if ($1 ~ /le="100(\.0)?"/) le100 = $2
    else if ($1 ~ /le="250(\.0)?"/) le250 = $2}
  END {if (stops != "") printf "rocksdb: writes stopped %.0f times, slowed %.0f times\n", stops, delays
    if (n != "") printf "writes that waited for memtable room: %.0f, %.1f s in all\n", n, us / 1e6
    if (total != "") printf "produce requests: %.0f; over 50 ms %.0f, over 100 ms %.0f, over 250 ms %.0f\n",
      total, total - le50, total - le100, total - le250}' || true
# RocksDB's flushes so far, of the partitions' families and of the small shared ones, and why
# (a flush job, which may write out several memtables, logs one table file start and one
# flush_started event).
awk '/\[JOB [0-9]+\] Level-0 flush table #[0-9]+: started/ {if ($0 ~ /\[log[-\]]/) p++; else o++}
  /"event": "flush_started"/ {match($0, /"flush_reason": "[^"]*"/); r[substr($0, RSTART + 17, RLENGTH - 18)]++}
  END {printf "rocksdb flushes: %d of partitions, %d of the small families; reasons:", p, o
    sep = " "; for (k in r) {printf "%s%s %d", sep, k, r[k]; sep = ", "}; printf "\n"}' "$data"/logs/LOG 2>/dev/null || true
if [ "$consume" = 1 ]; then
  perf_pid=
  if [ -n "$perf_consume" ]; then
    perf record -e cpu-clock -F 499 ${PERF_CALL_GRAPH:--g} -p "$pid" -o "$perf_consume" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  cpu_before=$(cpu_s)
  "$bin/strom-bench" --bootstrap "127.0.0.1:$port" --topic bench --partitions "$partitions" --consume-only
  echo "consume: broker CPU $(awk -v a="$(cpu_s)" -v b="$cpu_before" 'BEGIN {printf "%.1f", a - b}') s;" \
    "RSS $(rss_mb) MB, peak $(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status") MB"
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
fi
