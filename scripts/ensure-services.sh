#!/usr/bin/env bash
# Make sure the servers the tests talk to are up: Redis on 127.0.0.1:6379 and PostgreSQL on
# 127.0.0.1:5432. Starts whichever is installed and not running; says what is missing otherwise.
set -euo pipefail

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }
pg_up() { pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }

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

if command -v pg_isready >/dev/null 2>&1 && ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && ls /etc/postgresql >/dev/null 2>&1; then
    echo "starting PostgreSQL" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi
echo "redis: up$(pg_up && echo '; postgresql: up' || echo '; postgresql: not running (not needed yet)')" >&2
