#!/usr/bin/env bash
# Stops the nodes cluster-up.sh started (their data stays under .tenantry/nats-cluster/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
for i in 1 2 3; do
  pid_file="$root/.tenantry/nats-cluster/n$i.pid"
  if [ -f "$pid_file" ]; then
    kill "$(cat "$pid_file")" 2>/dev/null || true
    rm -f "$pid_file"
    echo "==> n$i stopped"
  fi
done
