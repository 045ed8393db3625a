#!/usr/bin/env bash
# Makes the certificates of the secured compose cluster (docker/compose.secure.yml) in DIR:
# ca.pem/ca.key, and broker.pem/broker.key valid for broker-1..3, controller-1..3,
# localhost and 127.0.0.1, usable as server and as client certificate (brokers and
# controllers present it to each other).
set -euo pipefail
dir=${1:-.certs}
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -keyout ca.key -out ca.pem \
  -subj "/CN=strom-ca" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr \
  -subj "/O=Strom/CN=broker" 2>/dev/null
cat > broker.ext <<EXT
basicConstraints=CA:FALSE
subjectAltName=DNS:broker-1,DNS:broker-2,DNS:broker-3,DNS:controller-1,DNS:controller-2,DNS:controller-3,DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth,clientAuth
EXT
openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
  -out broker.pem -extfile broker.ext 2>/dev/null
rm -f broker.csr broker.ext ca.srl
chmod 644 broker.key
echo "certificates in $dir: ca.pem, broker.pem, broker.key"
