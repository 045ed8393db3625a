#!/usr/bin/env bash
# The secured compose cluster, end to end: certificates, the cluster with
# docker/compose.secure.yml (SASL_SSL for clients, TLS with client certificates between
# brokers, mutual TLS between controllers and brokers), a replicated topic written with
# acks=all through the strom CLI and read back with kcat over SASL_SSL, a client without
# credentials refused, and the controllers refusing anyone without a certificate of the
# CA. Leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/compose.sh
certs=$(mktemp -d)
files=(-f docker-compose.yml -f docker/compose.secure.yml)
trap 'STROM_CERTS_DIR=$certs $COMPOSE "${files[@]}" down -v >/dev/null 2>&1 || true; rm -rf "$certs"' EXIT

scripts/secure-certs.sh "$certs" >/dev/null
$COMPOSE down -v >/dev/null 2>&1 || true
STROM_CERTS_DIR=$certs $COMPOSE "${files[@]}" up -d >/dev/null 2>&1
for _ in $(seq 1 150); do
  n=$($COMPOSE "${files[@]}" ps 2>/dev/null | grep -c '(healthy)' || true)
  [ "$n" -eq 6 ] && break
  sleep 1
done
[ "$n" -eq 6 ] || { $COMPOSE "${files[@]}" ps; echo "secure: the cluster did not become healthy" >&2; exit 1; }

sasl=(-X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512 -X sasl.username=admin
      -X sasl.password=admin-secret)
strom=(docker run --rm -i --network host -v "$certs:/certs:ro" --entrypoint /usr/local/bin/strom
       strom:local --bootstrap-server 127.0.0.1:19092 "${sasl[@]}" -X ssl.ca.location=/certs/ca.pem)
topic=secure-$$
"${strom[@]}" topics create "$topic" --partitions 1 --replication-factor 3 \
  --config min.insync.replicas=2 >/dev/null
seq 1 300 | "${strom[@]}" produce "$topic" --acks -1 >/dev/null
# Followers replicate over the TLS listener: all three are in the ISR.
isr=""
for _ in $(seq 1 60); do
  isr=$(curl -sf "http://127.0.0.1:19644/v1/topics/$topic" | grep -o '"isr":\[[0-9,]*\]' || true)
  [ "$(echo "$isr" | tr -cd ',' | wc -c)" -eq 2 ] && break
  sleep 0.5
done
[ "$(echo "$isr" | tr -cd ',' | wc -c)" -eq 2 ] || { echo "secure: ISR is $isr, not three brokers" >&2; exit 1; }
read=$(kcat -b 127.0.0.1:19093 "${sasl[@]}" -X "ssl.ca.location=$certs/ca.pem" \
  -C -t "$topic" -o beginning -e -q | wc -l)
[ "$read" -eq 300 ] || { echo "secure: kcat read $read of 300 records over SASL_SSL" >&2; exit 1; }
# Without credentials, or without TLS, nothing is served.
if kcat -b 127.0.0.1:19092 -X security.protocol=SSL -X "ssl.ca.location=$certs/ca.pem" \
    -L -m 5 >/dev/null 2>&1; then
  echo "secure: a client without SASL credentials was served" >&2; exit 1
fi
if kcat -b 127.0.0.1:19092 -L -m 5 >/dev/null 2>&1; then
  echo "secure: a PLAINTEXT client was served on the SASL_SSL port" >&2; exit 1
fi
# The control plane: https with a certificate of the CA only.
if curl -sf -m 5 "http://127.0.0.1:19081/v1/cluster" >/dev/null 2>&1; then
  echo "secure: a controller answered plain HTTP" >&2; exit 1
fi
if curl -sf -m 5 --cacert "$certs/ca.pem" "https://127.0.0.1:19081/v1/cluster" >/dev/null 2>&1; then
  echo "secure: a controller answered a client without a certificate" >&2; exit 1
fi
curl -sf -m 5 --cacert "$certs/ca.pem" --cert "$certs/broker.pem" --key "$certs/broker.key" \
  "https://127.0.0.1:19081/v1/cluster" >/dev/null \
  || { echo "secure: a controller refused a certificate of the CA" >&2; exit 1; }
echo "secure: 300 records over SASL_SSL, replicated over TLS to 3 brokers; unauthenticated clients refused; controllers on mutual TLS"
