#!/usr/bin/env bash
# Backs up what Tenantry cannot derive: the event stream and the vault's database.
#
#   deploy/backup/backup.sh <directory>
#
# Environment: NATS_URL (and TENANTRY_NAMESPACE, NATS credentials, as for tenantctl),
# VAULT_DATABASE_URL (the vault's PostgreSQL), TENANTCTL (default: tenantctl on PATH).
# Writes <directory>/events.jsonl, <directory>/vault.dump and <directory>/MANIFEST. Safe while
# the services run: the export is a consistent prefix of the log, pg_dump a consistent snapshot.
# The key ring is not copied: keep it apart from these files (it decrypts the vault's data keys).
set -euo pipefail

dir="${1:?usage: backup.sh <directory>}"
: "${VAULT_DATABASE_URL:?set VAULT_DATABASE_URL to the vault database}"
tenantctl="${TENANTCTL:-tenantctl}"

mkdir -p -- "$dir"
if [ -e "$dir/events.jsonl" ] || [ -e "$dir/vault.dump" ]; then
    echo "backup.sh: $dir already holds a backup; choose an empty directory" >&2
    exit 2
fi

echo "==> exporting the event stream"
"$tenantctl" events export --file "$dir/events.jsonl"
# After the stream: every vault change the log mentions is then in the dump as well.
echo "==> dumping the vault database"
pg_dump --format=custom --no-owner --file "$dir/vault.dump" -- "$VAULT_DATABASE_URL"

{
    echo "created_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "events=$(wc -l < "$dir/events.jsonl" | tr -d ' ')"
    echo "namespace=${TENANTRY_NAMESPACE:-}"
} > "$dir/MANIFEST"
echo "==> backup in $dir (restore with deploy/backup/restore.sh $dir)"
