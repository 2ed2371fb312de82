#!/usr/bin/env bash
# Stops the private instances `up.sh` started (never servers it found running).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
state="$root/.tenantry"

stopped=0
if [ -f "$state/nats.pid" ] && kill "$(cat "$state/nats.pid")" 2>/dev/null; then
  echo "stopped the private NATS"; stopped=1
fi
rm -f "$state/nats.pid"
if [ -f "$state/postgres/postmaster.pid" ]; then
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$bin/pg_ctl" -D "$state/postgres" stop -m fast >/dev/null
  else "$bin/pg_ctl" -D "$state/postgres" stop -m fast >/dev/null; fi
  echo "stopped the private PostgreSQL"; stopped=1
fi
if [ -f "$state/mariadb/mysqld.pid" ] && kill "$(cat "$state/mariadb/mysqld.pid")" 2>/dev/null; then
  echo "stopped the private MariaDB"; stopped=1
fi
[ "$stopped" = 1 ] || echo "no private instances were running (servers found running are left alone)"
