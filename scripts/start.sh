#!/usr/bin/env bash
# Starts Strom in the embedded single-node mode (Kafka on 127.0.0.1:9092, HTTP on :9644,
# data in ./strom-data), installing build dependencies first if they are missing.
# Extra arguments go to strom-broker, e.g. scripts/start.sh --num-partitions 3
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --no-python
source scripts/env.sh
RUSTFLAGS="$(release_rustflags)" exec cargo run --release --bin strom-broker -- --dev "$@"
