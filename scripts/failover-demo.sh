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
compose_up
exec .venv/bin/python scripts/failover_demo.py
