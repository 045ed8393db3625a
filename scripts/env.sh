# Sourced by the scripts: one target dir outside the clone (RocksDB's C++ takes ~15 minutes
# cold; keeping its output between clones and runs saves that), and sccache when present.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strom-target}"
if [ -z "${RUSTC_WRAPPER:-}" ] && command -v sccache >/dev/null 2>&1; then
  export RUSTC_WRAPPER=sccache
fi

# Release builds use the CPU's CRC32 and carry-less multiply instructions when it has them
# (x86-64-v2): RocksDB otherwise checksums its WAL and blocks in software (docs/perf.md).
release_rustflags() {
  if [ "$(uname -m)" = x86_64 ] && grep -q ' sse4_2' /proc/cpuinfo && grep -q ' pclmulqdq' /proc/cpuinfo; then
    echo "${RUSTFLAGS:-} -C target-feature=+sse4.2,+pclmulqdq"
  else
    echo "${RUSTFLAGS:-}"
  fi
}

# The release broker and CLI (with release_rustflags) and the librdkafka load generator
# (scripts/bench, which also builds librdkafka), as the librdkafka benchmarks use them.
build_release_bench() {
  RUSTFLAGS="$(release_rustflags)" cargo build --release --bin strom-broker --bin strom
  (cd scripts/bench && cargo build --release)
}

# Bytes process PID has sent towards the disk: what it dirtied or wrote directly, less the
# dirty page cache it dropped unwritten (a RocksDB WAL deleted before the kernel wrote it
# back); an integer (mawk would print large numbers in exponent form).
disk_written() {
  awk '/^write_bytes/ {w = $2} /^cancelled_write_bytes/ {c = $2} END {printf "%.0f\n", w - c}' "/proc/$1/io"
}

# librdkafka's own load generator, examples/rdkafka_performance.c, compiled from the
# librdkafka tree that rdkafka-sys built for scripts/bench (the newest, which strom-bench
# links) against its static library; after build_release_bench. Sets `rdkafka_performance`
# to its path.
build_rdkafka_performance() {
  local bin="$CARGO_TARGET_DIR/release" tree
  tree=$(dirname "$(dirname "$(ls -t "$bin"/build/rdkafka-sys-*/out/src/librdkafka.a | head -n 1)")")
  rdkafka_performance="$bin/rdkafka_performance"
  if [ ! -x "$rdkafka_performance" ] || [ "$tree/src/librdkafka.a" -nt "$rdkafka_performance" ]; then
    gcc -O2 -w -o "$rdkafka_performance" "$tree/examples/rdkafka_performance.c" -I"$tree/src" \
      "$tree/src/librdkafka.a" -lpthread -lz -lm -ldl
  fi
}

# Starts a release `strom-broker --dev` (BIN) on 127.0.0.1:PORT (HTTP on PORT+1, quorum on
# PORT+2) with DATA as its data directory, logging to DATA.log; sets `pid`, stops it and
# removes DATA on exit, and returns once it accepts connections.
start_dev_broker() {
  local bin=$1 data=$2 port=$3
  "$bin" --dev --data-dir "$data" --kafka-listen "127.0.0.1:$port" \
    --http-listen "127.0.0.1:$((port + 1))" --quorum-listen "127.0.0.1:$((port + 2))" > "$data.log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "'"$data"'" "'"$data"'.log"' EXIT
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
}
