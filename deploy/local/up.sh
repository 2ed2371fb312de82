#!/usr/bin/env bash
# Makes NATS (JetStream), PostgreSQL and MariaDB reachable for Tenantry.
#
# Uses servers that already answer (NATS_URL, DATABASE_URL, MARIADB_ADDR or the local
# defaults); otherwise starts private instances with data under .tenantry/, installing the
# Debian packages when the binaries are missing. Idempotent: run it as often as you like.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
state="$root/.tenantry"
mkdir -p "$state"

nats_url="${NATS_URL:-nats://127.0.0.1:4222}"
database_url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
mariadb_addr="${MARIADB_ADDR:-127.0.0.1:3306}"

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# host:port out of a URL like scheme://user:pw@host:port/path
host_port() {
  local rest="${1#*://}"
  rest="${rest##*@}"
  rest="${rest%%/*}"
  rest="${rest%%\?*}"
  printf '%s' "$rest"
}

reachable() { # host port
  timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

wait_for() { # name host port seconds
  local i
  for ((i = 0; i < $4 * 10; i++)); do
    reachable "$2" "$3" && return 0
    sleep 0.1
  done
  die "$1 did not start listening on $2:$3 within $4 s (see the logs under $state)"
}

apt_updated=""
ensure_package() { # binary package
  command -v "$1" >/dev/null 2>&1 && return 0
  [ -x "$1" ] && return 0
  [ "$(id -u)" = 0 ] || die "$1 is missing; install the Debian package '$2' (needs root), then run 'just up' again"
  say "installing $2"
  if [ -z "$apt_updated" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null || die "could not install $2"
}

# --- NATS with JetStream ---------------------------------------------------------------
hp="$(host_port "$nats_url")"; nats_host="${hp%:*}"; nats_port="${hp##*:}"
[ "$nats_port" = "$hp" ] && nats_port=4222
if reachable "$nats_host" "$nats_port"; then
  say "NATS answers at $nats_host:$nats_port"
else
  ensure_package nats-server nats-server
  say "starting a private NATS (JetStream) on $nats_host:$nats_port, data in .tenantry/nats"
  mkdir -p "$state/nats"
  nohup nats-server -a "$nats_host" -p "$nats_port" -js -sd "$state/nats" \
    -l "$state/nats.log" -P "$state/nats.pid" >/dev/null 2>&1 &
  wait_for NATS "$nats_host" "$nats_port" 20
fi

# --- PostgreSQL --------------------------------------------------------------------------
hp="$(host_port "$database_url")"; pg_host="${hp%:*}"; pg_port="${hp##*:}"
[ "$pg_port" = "$hp" ] && pg_port=5432
if reachable "$pg_host" "$pg_port"; then
  say "PostgreSQL answers at $pg_host:$pg_port"
else
  # A system cluster that is merely stopped: start it.
  if command -v pg_lsclusters >/dev/null 2>&1 && [ -n "$(pg_lsclusters -h 2>/dev/null)" ]; then
    ver="$(pg_lsclusters -h | awk 'NR==1 {print $1}')"; cluster="$(pg_lsclusters -h | awk 'NR==1 {print $2}')"
    say "starting the system PostgreSQL cluster $ver/$cluster"
    pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" start || true
  fi
  if ! reachable "$pg_host" "$pg_port"; then
    ensure_package pg_ctlcluster postgresql
    bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    [ -n "$bin" ] || die "PostgreSQL binaries not found under /usr/lib/postgresql"
    dir="$state/postgres"
    run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    if [ ! -f "$dir/PG_VERSION" ]; then
      say "initialising a private PostgreSQL in .tenantry/postgres (trust auth, user postgres)"
      mkdir -p "$dir"
      [ "$(id -u)" = 0 ] && chown postgres: "$dir" "$state"
      run_pg "$bin/initdb" -D "$dir" -U postgres --auth=trust >/dev/null
    fi
    say "starting the private PostgreSQL on $pg_host:$pg_port"
    run_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w \
      -o "-p $pg_port -c listen_addresses=$pg_host -k $dir" start >/dev/null
  fi
  wait_for PostgreSQL "$pg_host" "$pg_port" 30
fi

# --- MariaDB (frappe-sim keeps each site's data in its own database, like a real bench) ---
my_host="${mariadb_addr%:*}"; my_port="${mariadb_addr##*:}"
if reachable "$my_host" "$my_port"; then
  say "MariaDB answers at $my_host:$my_port"
else
  ensure_package mariadbd mariadb-server
  say "starting MariaDB on $my_host:$my_port"
  if [ -x /usr/sbin/mariadbd ] && [ -d /var/lib/mysql/mysql ]; then
    mkdir -p /run/mysqld && chown mysql: /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- \
      --bind-address="$my_host" --port="$my_port"
  else
    dir="$state/mariadb"
    if [ ! -d "$dir/mysql" ]; then
      mkdir -p "$dir"
      [ "$(id -u)" = 0 ] && chown mysql: "$dir"
      mariadb-install-db --datadir="$dir" --auth-root-authentication-method=normal >/dev/null
    fi
    nohup mariadbd --datadir="$dir" --bind-address="$my_host" --port="$my_port" \
      --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" --user="$(id -un)" \
      >"$state/mariadb.log" 2>&1 &
  fi
  wait_for MariaDB "$my_host" "$my_port" 60
fi

say "stack is up (NATS $nats_host:$nats_port, PostgreSQL $pg_host:$pg_port, MariaDB $my_host:$my_port)"
