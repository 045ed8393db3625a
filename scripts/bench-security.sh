#!/usr/bin/env bash
# What security costs, on release `strom-broker --dev` (one partition, 1 KB records,
# acks=1, 100-record batches), with Strom's own perf client:
#   1. produce and consume over PLAINTEXT and over SASL_SSL (SCRAM-SHA-512, TLS 1.3),
#      alternating for --rounds rounds, each phase on a fresh broker and data directory (so
#      neither writes on top of the other's data);
#   2. produce over SASL_PLAINTEXT with the authoriser on and 10,000 ACLs, as a super user
#      (no check) and as a user every request is checked for (the ACL cost per request).
# Each line is the perf client's own output.
#   scripts/bench-security.sh [--records N] [--rounds R] [--bin-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
records=500000
rounds=3
bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --bin-dir) bin=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  scripts/setup.sh
  source scripts/env.sh
  RUSTFLAGS="$(release_rustflags)" cargo build --release --bin strom-broker --bin strom
  bin="$CARGO_TARGET_DIR/release"
fi

data=$(mktemp -d)
base=$((20000 + RANDOM % 10000))
broker_pid=""
stop_broker() {
  if [ -n "$broker_pid" ]; then
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=""
  fi
}
trap 'stop_broker; rm -rf "$data"' EXIT
scripts/secure-certs.sh "$data/certs" >/dev/null

start_broker() { # extra flags...
  rm -rf "$data/b"
  "$bin/strom-broker" --dev --data-dir "$data/b" --quorum-listen "127.0.0.1:$((base + 9))" \
    --http-listen "127.0.0.1:$((base + 8))" \
    --listeners "PLAINTEXT://127.0.0.1:$base,SASL_SSL://127.0.0.1:$((base + 1)),SASL_PLAINTEXT://127.0.0.1:$((base + 2))" \
    --ssl-certificate "$data/certs/broker.pem" --ssl-key "$data/certs/broker.key" \
    --scram-user bench=bench-pw --scram-user admin=admin-pw "$@" > "$data/broker.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$base") 2>/dev/null && break
    sleep 0.1
  done
  sleep 1
}
sasl() { # user port
  echo -X security.protocol="$3" -X sasl.mechanism=SCRAM-SHA-512 -X "sasl.username=$1" \
    -X "sasl.password=$1-pw" -X "ssl.ca.location=$data/certs/ca.pem" -b "127.0.0.1:$2"
}
common=(--records "$records" --record-size 1024 --acks 1 --batch-records 100)

for round in $(seq 1 "$rounds"); do
  start_broker
  "$bin/strom" -b "127.0.0.1:$base" topics create plain --partitions 1 >/dev/null
  echo "== PLAINTEXT: produce, consume (round $round, fresh broker)"
  "$bin/strom" -b "127.0.0.1:$base" perf produce --topic plain "${common[@]}"
  "$bin/strom" -b "127.0.0.1:$base" perf consume --topic plain --records "$records"
  stop_broker
  start_broker
  "$bin/strom" -b "127.0.0.1:$base" topics create tls --partitions 1 >/dev/null
  echo "== SASL_SSL (SCRAM-SHA-512): produce, consume (round $round, fresh broker)"
  # shellcheck disable=SC2046
  "$bin/strom" $(sasl bench $((base + 1)) SASL_SSL) perf produce --topic tls "${common[@]}"
  # shellcheck disable=SC2046
  "$bin/strom" $(sasl bench $((base + 1)) SASL_SSL) perf consume --topic tls --records "$records"
  stop_broker
done

start_broker --authorizer --super-users User:admin
for t in super-1 super-2 checked-1 checked-2; do
  # shellcheck disable=SC2046
  "$bin/strom" $(sasl admin $((base + 2)) SASL_PLAINTEXT) topics create "authz-$t" --partitions 1 >/dev/null
done
# 10,000 ACLs: 9,998 on other users' topics (half literal, half prefixed) and bench's own.
.venv/bin/python - "$base" <<'EOF'
import sys
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType)
port = int(sys.argv[1]) + 2
admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_PLAINTEXT",
                     "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "admin",
                     "sasl.password": "admin-pw"})
acls = [AclBinding(ResourceType.TOPIC, f"t{i}-", ResourcePatternType.PREFIXED if i % 2 else
                   ResourcePatternType.LITERAL, f"User:u{i}", "*", AclOperation.WRITE,
                   AclPermissionType.ALLOW) for i in range(9998)]
acls += [AclBinding(ResourceType.TOPIC, "authz-checked-", ResourcePatternType.PREFIXED,
                    "User:bench", "*", op, AclPermissionType.ALLOW)
         for op in (AclOperation.WRITE, AclOperation.READ)]
for i in range(0, len(acls), 1000):
    for f in admin.create_acls(acls[i:i + 1000]).values():
        f.result(timeout=60)
print(f"created {len(acls)} ACLs")
EOF
# Alternating, each run into a fresh topic, so neither side writes on the other's data.
for round in 1 2; do
  echo "== authoriser on, 10,000 ACLs: produce as a super user (not checked), round $round"
  # shellcheck disable=SC2046
  "$bin/strom" $(sasl admin $((base + 2)) SASL_PLAINTEXT) perf produce --topic "authz-super-$round" "${common[@]}"
  echo "== authoriser on, 10,000 ACLs: produce as a checked user, round $round"
  # shellcheck disable=SC2046
  "$bin/strom" $(sasl bench $((base + 2)) SASL_PLAINTEXT) perf produce --topic "authz-checked-$round" "${common[@]}"
done
