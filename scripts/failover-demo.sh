#!/usr/bin/env bash
# The failover demo on the docker compose cluster: a producer (acks=all, idempotent) and a
# consumer on an RF=3 topic while the leader of partition 0 is killed and started again, then
# the active controller; prints a timeline from the HTTP API and checks the consumer saw every
# acknowledged record. Starts the cluster if it is not up (build the image first:
# scripts/build-image.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/compose.sh
[ -x .venv/bin/python ] || scripts/setup.sh
$COMPOSE up -d >/dev/null 2>&1
for port in 19644 19645 19646; do
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/v1/cluster" >/dev/null && break
    sleep 0.2
  done
done
exec .venv/bin/python scripts/failover_demo.py
