#!/usr/bin/env bash
# Restores a backup made by backup.sh, in the order a full restore needs:
#   1. the event stream (into an empty stream; every message at its old sequence),
#   2. the vault database,
#   3. the KV buckets derived from the log (`tenantctl recover`),
# and, with --rebuild once the services are running again, 4. the read model
# (`tenantctl replay --projection tenants`).
#
#   deploy/backup/restore.sh <directory>            # steps 1-3, services stopped
#   deploy/backup/restore.sh --rebuild              # step 4, services started
#
# Environment as for backup.sh; the vault database must exist (it is cleaned, then filled).
set -euo pipefail

tenantctl="${TENANTCTL:-tenantctl}"

if [ "${1:-}" = "--rebuild" ]; then
    echo "==> rebuilding the read model from the log"
    exec "$tenantctl" replay --projection tenants
fi

dir="${1:?usage: restore.sh <directory> | restore.sh --rebuild}"
: "${VAULT_DATABASE_URL:?set VAULT_DATABASE_URL to the vault database}"
for f in events.jsonl vault.dump; do
    if [ ! -f "$dir/$f" ]; then
        echo "restore.sh: $dir/$f is missing; is $dir a backup.sh directory?" >&2
        exit 2
    fi
done

echo "==> importing the event stream (a second run resumes)"
"$tenantctl" events import --file "$dir/events.jsonl"
echo "==> restoring the vault database"
pg_restore --clean --if-exists --no-owner --dbname "$VAULT_DATABASE_URL" -- "$dir/vault.dump"
echo "==> rebuilding the derived KV buckets"
"$tenantctl" recover
echo "==> done; start the services (vault with the same key ring), then run:"
echo "    deploy/backup/restore.sh --rebuild"
