#!/usr/bin/env bash
# Starts the 3-node JetStream cluster of deploy/nats/n{1,2,3}.conf on loopback (client ports
# 4231-4233), data under .tenantry/nats-cluster/. Idempotent. Then point the services at it:
#   NATS_URL=nats://127.0.0.1:4231,nats://127.0.0.1:4232,nats://127.0.0.1:4233
#   TENANTRY_NATS_REPLICAS=3
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
state=".tenantry/nats-cluster"
mkdir -p "$state"
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || {
  echo "error: nats-server is missing; run 'just up' (it installs it) or install the Debian package nats-server" >&2
  exit 1
}
bin="$(command -v nats-server || echo /usr/sbin/nats-server)"
reachable() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
for i in 1 2 3; do
  port="423$i"
  if reachable "$port"; then
    echo "==> n$i answers on 127.0.0.1:$port"
    continue
  fi
  mkdir -p "$state/n$i"
  nohup "$bin" -c "deploy/nats/n$i.conf" -l "$state/n$i.log" -P "$state/n$i.pid" >/dev/null 2>&1 &
done
for i in 1 2 3; do
  for _ in $(seq 1 100); do reachable "423$i" && break; sleep 0.1; done
  reachable "423$i" || { echo "error: n$i did not start (see $state/n$i.log)" >&2; exit 1; }
done
# The JetStream meta leader is elected once the routes are up; /healthz?js-enabled-only says so.
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:8231/healthz" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
echo "==> cluster up: NATS_URL=nats://127.0.0.1:4231,nats://127.0.0.1:4232,nats://127.0.0.1:4233 TENANTRY_NATS_REPLICAS=3"
