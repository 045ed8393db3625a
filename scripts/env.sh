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
