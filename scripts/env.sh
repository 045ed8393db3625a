# Sourced by the scripts: one target dir outside the clone (RocksDB's C++ takes ~15 minutes
# cold; keeping its output between clones and runs saves that), and sccache when present.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strom-target}"
if [ -z "${RUSTC_WRAPPER:-}" ] && command -v sccache >/dev/null 2>&1; then
  export RUSTC_WRAPPER=sccache
fi
