#!/usr/bin/env bash
# Runs the whole test suite: unit and storage conformance tests, multi-process tests, and the
# real-client compatibility tests (confluent-kafka, kafka-python, kcat). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh

echo "== build"
cargo build --workspace --bins
export STROM_BROKER_BIN="$CARGO_TARGET_DIR/debug/strom-broker"

echo "== cargo test"
cargo test --workspace

echo "== real clients (pytest)"
.venv/bin/python -m pytest integration-tests/python -q -p no:cacheprovider
