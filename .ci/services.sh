#!/usr/bin/env bash
# Makes sure what the test suite needs is installed and running: Go's toolchain is assumed;
# Debian packages (chromium, openssl, postgresql, redis) are installed when missing; PostgreSQL
# and Redis are started when not answering. Safe to run again; starts only what is down.
set -euo pipefail

log() { printf 'services: %s\n' "$*" >&2; }

apt_updated=0
need_pkg() { # need_pkg COMMAND PACKAGE...
  local cmd=$1; shift
  if ! command -v "$cmd" >/dev/null 2>&1; then
    if [ "$apt_updated" = 0 ]; then
      log "apt-get update"
      DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
      apt_updated=1
    fi
    log "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
  fi
}

need_pkg chromium chromium
need_pkg openssl openssl
need_pkg pg_isready postgresql postgresql-client
need_pkg redis-server redis-server
need_pkg redis-cli redis-tools

wait_for() { # wait_for DESCRIPTION COMMAND...
  local what=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "$what did not come up"
  return 1
}

if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  log "starting PostgreSQL"
  for v in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
  done
  wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432 -q
fi
# Trust authentication for the local test user, as on the development machines.
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
  log "PostgreSQL does not accept user postgres over TCP without a password: set FINEPAY_TEST_PG_URL"
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping
fi
log "ready: PostgreSQL, Redis, Chromium ($(chromium --version 2>/dev/null | head -1)), $(openssl version)"
