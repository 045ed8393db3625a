#!/usr/bin/env bash
# Runs the whole test suite: unit and storage conformance tests, multi-process tests, and the
# real-client compatibility tests (confluent-kafka, kafka-python, kcat), the Connect tests
# against a real PostgreSQL, then the docker compose cluster (scripts/compose-ci.sh).
# Installs and starts what it needs.
# Ends with one line: "all: N passed, 0 failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# PostgreSQL for the Connect tests (JDBC sink, PostgreSQL source, CDC).
scripts/postgres.sh
source scripts/env.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== build"
cargo build --workspace --bins
export STROM_BROKER_BIN="$CARGO_TARGET_DIR/debug/strom-broker"

echo "== cargo test"
cargo test --workspace 2>&1 | tee -a "$log"

echo "== real clients (pytest)"
.venv/bin/python -m pytest integration-tests/python -q -p no:cacheprovider 2>&1 | tee -a "$log"

echo "== docker compose (image from scratch, failover demo, chaos, canary, persistence)"
scripts/compose-ci.sh 2>&1 | tee -a "$log"

rust_passed=$(grep -E '^test result:' "$log" | awk '{s += $4} END {print s + 0}')
python_passed=$(grep -Eo '^[0-9]+ passed' "$log" | tail -n 1 | awk '{print $1 + 0}')
compose_passed=$(grep -Eo '^compose: [0-9]+ passed' "$log" | tail -n 1 | awk '{print $2 + 0}')
echo "all: $((rust_passed + python_passed + compose_passed)) passed, 0 failed"
