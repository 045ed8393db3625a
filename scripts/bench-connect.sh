#!/usr/bin/env bash
# strom-connect throughput on this machine, release builds, one `strom-broker --dev` each:
#   1. FileStreamSource: a file of --records JSON lines -> a topic (records/s until the
#      topic's high watermark holds them all);
#   2. JDBC sink: that topic -> PostgreSQL, batched upserts over --keys keys (records/s until
#      the table shows the last record of every key);
#   3. mirror: that topic from the first broker to a second one (MirrorSourceConnector).
# Each line also gives the CPU seconds of the worker (and of PostgreSQL for the sink), which
# says where the time goes.
#   scripts/bench-connect.sh [--records N] [--keys N] [--bin-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
records=1000000
keys=100000
bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records=$2; shift 2 ;;
    --keys) keys=$2; shift 2 ;;
    --bin-dir) bin=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
scripts/postgres.sh >/dev/null
if [ -z "$bin" ]; then
  scripts/setup.sh
  source scripts/env.sh
  RUSTFLAGS="$(release_rustflags)" cargo build --release -p broker --bin strom-broker \
    -p strom-client --bin strom -p strom-connect --bin strom-connect
  bin="$CARGO_TARGET_DIR/release"
fi
pg_url=${STROM_PG_URL:-postgresql://strom:strom@127.0.0.1:5432/strom}

data=$(mktemp -d)
base=$((20000 + RANDOM % 10000))
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
broker() { # broker NAME PORT
  "$bin/strom-broker" --dev --data-dir "$data/$1" --kafka-listen "127.0.0.1:$2" \
    --http-listen "127.0.0.1:$(($2 + 1))" --quorum-listen "127.0.0.1:$(($2 + 2))" > "$data/$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do "$bin/strom" -b "127.0.0.1:$2" topics list >/dev/null 2>&1 && return; sleep 0.2; done
  echo "broker $1 did not start" >&2; exit 1
}
broker a "$base"
broker b "$((base + 10))"
bs_a="127.0.0.1:$base"; http_a="127.0.0.1:$((base + 1))"
bs_b="127.0.0.1:$((base + 10))"; http_b="127.0.0.1:$((base + 11))"
hw() { curl -s "http://$1/v1/topics/$2" | python3 -c 'import json,sys
try: print(sum(p.get("high_watermark", 0) for p in json.load(sys.stdin)["partitions"]))
except Exception: print(0)'; }
cpu() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_cpu() { for p in $(pgrep -f "postgres" || true); do cpu "$p"; done | awk '{s+=$1} END{print s+0}'; }
ticks=$(getconf CLK_TCK)
report() { # report NAME START END C0 C1 [PG0 PG1]
  python3 - "$records" "$ticks" "$@" <<'PY'
import sys
n, hz, name, start, end, c0, c1 = sys.argv[1:8]
t = float(end) - float(start)
cpu = (int(c1) - int(c0)) / int(hz)
line = f"{name}: {int(n):,} records in {t:.1f} s = {int(n)/t:,.0f} records/s; worker CPU {cpu:.1f} s ({cpu/t:.0%} of one core)"
if len(sys.argv) > 9:
    pg = (int(sys.argv[9]) - int(sys.argv[8])) / int(hz)
    line += f"; PostgreSQL CPU {pg:.1f} s ({pg/t:.0%} of one core)"
print(line)
PY
}
worker() { # worker NAME BOOTSTRAP CONNECTOR-FILE
  local port=$((base + 50 + RANDOM % 100))
  printf 'bootstrap.servers=%s\nlisteners=http://127.0.0.1:%s\noffset.storage.file.filename=%s\noffset.flush.interval.ms=10000\n' \
    "$2" "$port" "$data/$1.offsets" > "$data/$1.worker.properties"
  "$bin/strom-connect" standalone "$data/$1.worker.properties" "$3" > "$data/$1.log" 2>&1 &
  pids+=($!)
  echo $!
}

python3 - "$records" "$keys" "$data/input.json" <<'PY'
import sys
n, keys, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    for i in range(n):
        f.write('{"id":%d,"seq":%d,"name":"customer-%d","amount":%d.5}\n' % (i % keys, i, i % keys, i % 1000))
PY
echo "input: $records JSON lines ($(du -h "$data/input.json" | cut -f1)), $keys keys"
"$bin/strom" -b "$bs_a" topics create orders --partitions 4 >/dev/null

# 1. FileStreamSource -> topic.
cat > "$data/source.properties" <<EOF2
name=file-source
connector.class=FileStreamSource
file=$data/input.json
topic=orders
batch.size=10000
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.storage.StringConverter
EOF2
start=$(date +%s.%N)
pid=$(worker source "$bs_a" "$data/source.properties")
c0=$(cpu "$pid")
until [ "$(hw "$http_a" orders)" -ge "$records" ]; do sleep 0.2; done
end=$(date +%s.%N); c1=$(cpu "$pid")
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
report "FileStreamSource -> topic" "$start" "$end" "$c0" "$c1"

# 2. topic -> PostgreSQL (upsert).
table="bench_orders_$$"
psql "$pg_url" -qc "DROP TABLE IF EXISTS $table" 2>/dev/null || true
cat > "$data/sink.properties" <<EOF2
name=pg-sink
connector.class=io.confluent.connect.jdbc.JdbcSinkConnector
connection.url=jdbc:${pg_url/postgresql:\/\/*@/postgresql://}
connection.user=$(echo "$pg_url" | sed -E 's#.*://([^:]+):.*#\1#')
connection.password=$(echo "$pg_url" | sed -E 's#.*://[^:]+:([^@]+)@.*#\1#')
topics=orders
tasks.max=1
table.name.format=$table
insert.mode=upsert
pk.mode=record_value
pk.fields=id
auto.create=true
batch.size=3000
consumer.override.max.poll.records=3000
value.converter=org.apache.kafka.connect.json.JsonConverter
value.converter.schemas.enable=false
EOF2
start=$(date +%s.%N)
p0=$(pg_cpu)
pid=$(worker sink "$bs_a" "$data/sink.properties")
c0=$(cpu "$pid")
last=$((records - 1))
q() { psql "$pg_url" -tAc "$1" 2>/dev/null || echo 0; }
# Done when every key holds its last record: the sum of seq equals the last keys' seqs.
want=$(python3 -c "print(sum(range($records - $keys, $records)))")
until [ "$(q "SELECT coalesce(sum(seq), 0) FROM $table")" = "$want" ]; do sleep 0.5; done
end=$(date +%s.%N); c1=$(cpu "$pid"); p1=$(pg_cpu)
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
report "topic -> PostgreSQL (upsert, $keys keys)" "$start" "$end" "$c0" "$c1" "$p0" "$p1"
echo "  rows: $(q "SELECT count(*) FROM $table"), last seq $(q "SELECT max(seq) FROM $table") (want $last)"
q "DROP TABLE $table" >/dev/null

# 3. Mirror: broker a -> broker b.
cat > "$data/mirror.properties" <<EOF2
name=mirror
connector.class=MirrorSourceConnector
source.cluster.alias=a
source.cluster.bootstrap.servers=$bs_a
target.cluster.bootstrap.servers=$bs_b
topics=orders
tasks.max=1
EOF2
start=$(date +%s.%N)
pid=$(worker mirror "$bs_b" "$data/mirror.properties")
c0=$(cpu "$pid")
until [ "$(hw "$http_b" a.orders)" -ge "$records" ]; do sleep 0.2; done
end=$(date +%s.%N); c1=$(cpu "$pid")
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
report "mirror a.orders (broker -> broker)" "$start" "$end" "$c0" "$c1"
