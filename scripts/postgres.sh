#!/usr/bin/env bash
# Starts the local PostgreSQL server (Debian's `postgresql` package) for the Connect tests:
# logical decoding on (for CDC), and a superuser `strom` (password `strom`) owning the
# database `strom`. Idempotent. The tests connect to $STROM_PG_URL, by default
# postgresql://strom:strom@127.0.0.1:5432/strom.
set -euo pipefail
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "postgres: installing postgresql"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q postgresql >/dev/null
fi
ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$ver main" || $SUDO pg_createcluster "$ver" main >/dev/null
conf=/etc/postgresql/$ver/main/postgresql.conf
restart=0
if ! grep -q '^wal_level = logical' "$conf"; then
  printf 'wal_level = logical\nmax_replication_slots = 20\nmax_wal_senders = 20\n' | $SUDO tee -a "$conf" >/dev/null
  restart=1
fi
status=$(pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main" {print $4}')
if [ "$status" != online ]; then
  $SUDO pg_ctlcluster "$ver" main start
elif [ "$restart" = 1 ]; then
  $SUDO pg_ctlcluster "$ver" main restart
fi
psql_admin() { $SUDO runuser -u postgres -- psql -qtA "$@"; }
for _ in $(seq 1 50); do psql_admin -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
[ "$(psql_admin -c "select 1 from pg_roles where rolname = 'strom'")" = 1 ] \
  || psql_admin -c "create role strom login superuser replication password 'strom'" >/dev/null
[ "$(psql_admin -c "select 1 from pg_database where datname = 'strom'")" = 1 ] \
  || psql_admin -c "create database strom owner strom" >/dev/null
port=$(pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main" {print $3}')
echo "postgres: PostgreSQL $ver on 127.0.0.1:$port (postgresql://strom:strom@127.0.0.1:$port/strom)"
