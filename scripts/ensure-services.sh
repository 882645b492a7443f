#!/usr/bin/env bash
# Make sure the servers the tests talk to are up: Redis on 127.0.0.1:6379 and PostgreSQL on
# 127.0.0.1:5432 with a database `test` (user postgres, no password). Starts whichever is
# installed and not running, creates the database if it is missing, and fails with the one
# command to run when a server is not installed.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
PG_USER=postgres
PG_DB=test

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }
pg_up() { pg_isready -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1; }
pg_sql() { psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc "$1"; }

if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server is not installed: install it with 'apt-get install -y redis-server'" >&2
  exit 1
fi
if ! redis_up; then
  echo "starting redis-server on 127.0.0.1:6379" >&2
  mkdir -p /tmp/floodgate-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/floodgate-redis --logfile /tmp/floodgate-redis/redis.log
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  redis_up || { echo "redis-server did not come up; see /tmp/floodgate-redis/redis.log" >&2; exit 1; }
fi

if ! pg_up; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    echo "PostgreSQL is not installed (the message store's tests need it):" \
      "install it with 'apt-get install -y postgresql'" >&2
    exit 1
  fi
  version="$(ls /etc/postgresql | sort -V | tail -n1)"
  echo "starting PostgreSQL $version on $PG_HOST:$PG_PORT" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 100); do pg_up && break; sleep 0.1; done
  pg_up || { echo "PostgreSQL did not come up; see /var/log/postgresql/" >&2; exit 1; }
fi

if ! pg_sql "SELECT 1" >/dev/null 2>&1; then
  echo "PostgreSQL runs but user $PG_USER cannot log in over TCP without a password:" \
    "allow it ('host all postgres 127.0.0.1/32 trust' in pg_hba.conf) or point" \
    "FLOODGATE_TEST_DATABASE_URL at a database the tests may use" >&2
  exit 1
fi
if [ "$(pg_sql "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != "1" ]; then
  echo "creating database $PG_DB" >&2
  pg_sql "CREATE DATABASE $PG_DB" >/dev/null
fi
echo "redis: up; postgresql: up, database $PG_DB" >&2
