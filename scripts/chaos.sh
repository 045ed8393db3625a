#!/usr/bin/env bash
# A seeded chaos run on the docker compose cluster: broker kills, pauses longer than the
# session timeout, a leader cut off the network, active-controller kills, while an idempotent
# acks=all producer, a consumer group and an exactly-once consume-transform-produce pipeline
# (scripts/chaos_eos.py) run; then the consistency checker and the exactly-once check.
#   scripts/chaos.sh [--seed N] [--duration 120s] [--canary | --wal-tmpfs]
# --canary restarts the brokers with STROM_UNSAFE_ACK_BEFORE_REPLICATION=true (acks=all
# answered before replicating): the run must then report lost writes and exit non-zero.
# --wal-tmpfs restarts the brokers with their WAL on a tmpfs of their own container
# (docker/compose.wal-tmpfs.yml), so that each broker kill is a host crash for the WAL;
# the brokers stay so after the run (scripts/compose-ci.sh checks what they lost).
# Needs the image (scripts/build-image.sh); starts the cluster if it is not up.
set -euo pipefail
cd "$(dirname "$0")/.."
seed=1
duration=120s
canary=0
wal_tmpfs=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) seed=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --canary) canary=1; shift ;;
    --wal-tmpfs) wal_tmpfs=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
source scripts/compose.sh
[ -x .venv/bin/python ] || scripts/setup.sh
source scripts/env.sh
if [ "$canary" = 1 ] && [ "$wal_tmpfs" = 1 ]; then
  echo "--canary and --wal-tmpfs do not go together" >&2
  exit 2
elif [ "$canary" = 1 ]; then
  compose_up -f docker/compose.canary.yml
elif [ "$wal_tmpfs" = 1 ]; then
  compose_up -f docker/compose.wal-tmpfs.yml
else
  compose_up
fi
cargo build -q -p integration-tests --example chaos
status=0
STROM_PYTHON=.venv/bin/python "$CARGO_TARGET_DIR/debug/examples/chaos" --seed "$seed" --duration "$duration" || status=$?
if [ "$canary" = 1 ]; then
  # Back to the real brokers.
  compose_up
fi
exit $status
