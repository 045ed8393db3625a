#!/usr/bin/env bash
# Streams throughput and restore time, on one release `strom-broker --dev` on this machine:
#   1. wordcount (streams/examples/wordcount.rs), one instance, 4 input partitions,
#      at_least_once, then exactly_once_v2: input lines/s and words/s until the group has
#      no lag, and the app's CPU seconds (records per CPU-second = per core);
#   2. the same word count in Quix Streams (PyPI quixstreams, scripts/bench_streams_quix.py);
#   3. restore: a store of --keys distinct keys rebuilt from its changelog after the state
#      directory is deleted (the restore time the app logs).
#   scripts/bench-streams.sh [--lines N] [--keys N] [--bin-dir DIR] [--skip-quix]
set -euo pipefail
cd "$(dirname "$0")/.."
lines=1000000
keys=1000000
# Both guarantees commit every second, so that "done" (no lag) shows within a second
# (at least once defaults to 30 s; exactly once to 100 ms).
commit_ms=1000
bin=""
quix=1
while [ $# -gt 0 ]; do
  case "$1" in
    --lines) lines=$2; shift 2 ;;
    --keys) keys=$2; shift 2 ;;
    --bin-dir) bin=$2; shift 2 ;;
    --skip-quix) quix=0; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  scripts/setup.sh
  source scripts/env.sh
  RUSTFLAGS="$(release_rustflags)" cargo build --release -p broker --bin strom-broker \
    -p strom-client --bin strom -p strom-streams --example wordcount
  bin="$CARGO_TARGET_DIR/release"
fi
wordcount="$bin/examples/wordcount"
[ -x "$wordcount" ] || wordcount="$bin/wordcount"

data=$(mktemp -d)
base=$((20000 + RANDOM % 10000))
bs="127.0.0.1:$base"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
"$bin/strom-broker" --dev --data-dir "$data/b" --kafka-listen "$bs" \
  --http-listen "127.0.0.1:$((base + 1))" --quorum-listen "127.0.0.1:$((base + 2))" \
  --group-initial-rebalance-delay-ms 0 > "$data/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do "$bin/strom" -b "$bs" topics list >/dev/null 2>&1 && break; sleep 0.2; done
strom() { "$bin/strom" -b "$bs" "$@"; }

# Input: lines of 1-8 words from a vocabulary of 10,000.
python3 - "$lines" "$data/lines.txt" <<'PY'
import random, sys
n, path = int(sys.argv[1]), sys.argv[2]
r = random.Random(7)
vocab = ["w%d" % i for i in range(10000)]
with open(path, "w") as f:
    for _ in range(n):
        f.write(" ".join(r.choice(vocab) for _ in range(r.randint(1, 8))) + "\n")
PY
words=$(wc -w < "$data/lines.txt")
strom topics create lines --partitions 4 >/dev/null
strom produce lines --file "$data/lines.txt" >/dev/null
echo "input: $lines lines, $words words, 4 partitions"

# Lag of a group over every topic it reads; under exactly-once each partition keeps a lag of
# one (the commit marker after the last committed record).
lag() { strom groups describe "$1" 2>/dev/null | awk '/ lag /{s+=$NF; n++} END{print (n==0)?-1:s}'; }
cpu() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
ticks=$(getconf CLK_TCK)

# run NAME GROUP SLACK INPUT CMD...: time until the group's lag is at most SLACK.
run() {
  local name=$1 group=$2 slack=$3 input=$4; shift 4
  local start end pid c0 c1 l
  start=$(date +%s.%N)
  "$@" > "$data/$name.log" 2>&1 &
  pid=$!; pids+=($pid)
  c0=$(cpu $pid)
  while sleep 0.5; do
    kill -0 $pid 2>/dev/null || { echo "$name exited:"; tail -20 "$data/$name.log"; return 1; }
    l=$(lag "$group")
    if [ "$l" -ge 0 ] && [ "$l" -le "$slack" ]; then
      # The input topic's partitions must show up too (the group may not have started).
      strom groups describe "$group" | grep -q " $input " && break
    fi
  done
  end=$(date +%s.%N)
  c1=$(cpu $pid)
  kill -TERM $pid; wait $pid 2>/dev/null || true
  python3 - "$name" "$start" "$end" "$lines" "$words" "$c0" "$c1" "$ticks" <<'PY'
import sys
name, start, end, lines, words, c0, c1, hz = sys.argv[1:]
t = float(end) - float(start)
cpu = (int(c1) - int(c0)) / int(hz)
print(f"{name}: {t:.1f} s, {int(lines)/t:,.0f} lines/s, {int(words)/t:,.0f} words/s; "
      f"app CPU {cpu:.1f} s = {int(words)/max(cpu, 0.01):,.0f} words per CPU-second")
PY
}

for g in at_least_once exactly_once_v2; do
  strom topics create "counts-$g" --partitions 4 >/dev/null
  slack=0; [ $g = exactly_once_v2 ] && slack=8
  run "strom-$g" "wc-$g" $slack lines "$wordcount" --bootstrap-server "$bs" --input lines \
    --output "counts-$g" --application-id "wc-$g" --processing-guarantee $g \
    --commit-interval-ms "$commit_ms" --state-dir "$data/state-$g"
done

if [ "$quix" = 1 ]; then
  [ -x .venv/bin/python ] || scripts/setup.sh
  strom topics create counts-quix --partitions 4 >/dev/null
  run quixstreams-at-least-once quix-wc 0 lines .venv/bin/python scripts/bench_streams_quix.py \
    "$bs" lines counts-quix quix-wc "$data/quix-state" at-least-once
fi

# Restore: a store of $keys distinct words, rebuilt after the state dir is deleted.
python3 -c "
import sys
with open('$data/uniq.txt', 'w') as f:
    for i in range($keys): f.write('k%d\n' % i)
"
strom topics create uniq --partitions 4 >/dev/null
strom topics create uniq-counts --partitions 4 >/dev/null
strom produce uniq --file "$data/uniq.txt" >/dev/null
args=(--bootstrap-server "$bs" --input uniq --output uniq-counts --application-id restore
  --commit-interval-ms "$commit_ms" --state-dir "$data/state-restore")
saved=$lines; lines=$keys; words=$keys
run restore-build restore 0 uniq "$wordcount" "${args[@]}"
lines=$saved
rm -rf "$data/state-restore"
"$wordcount" "${args[@]}" > "$data/restore.log" 2>&1 &
pid=$!; pids+=($pid)
for _ in $(seq 600); do grep -q "restored state stores" "$data/restore.log" && break; sleep 0.5; done
kill -TERM $pid; wait $pid 2>/dev/null || true
grep "restored state stores" "$data/restore.log" | head -1 | sed 's/.*restored state stores/restore of a '"$keys"'-key store:/'
echo "broker peak RSS: $(grep VmHWM /proc/${pids[0]}/status 2>/dev/null | awk '{print $2/1024 " MB"}')"
