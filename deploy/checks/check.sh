#!/usr/bin/env bash
# Validates what deploy/ ships, with the tools that run here (no Docker engine, no cluster):
#   Dockerfile  — deploy/checks/dockerfile.py (syntax and the image's rules; hadolint is in no
#                 registry this machine reaches)
#   compose     — `docker-compose config` (Debian's docker-compose) with and without profiles,
#                 on a copy whose secrets gen-secrets.sh has just made
#   Kubernetes  — kubernetes-validate (PyPI, bundled OpenAPI schemas), strict, against 1.30
#   systemd     — `systemd-analyze verify` in a scratch root (the binary stubbed), where any
#                 warning fails
# Installs docker-compose (apt) when missing; `just python-deps` brings kubernetes-validate.
set -euo pipefail
cd "$(dirname "$0")/../.."
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

echo "==> Dockerfile"
python3 deploy/checks/dockerfile.py deploy/docker/Dockerfile

echo "==> compose"
if ! command -v docker-compose >/dev/null 2>&1; then
    $sudo apt-get install -y -qq docker-compose >/dev/null 2>&1 \
        || { $sudo apt-get update -qq && $sudo apt-get install -y -qq docker-compose >/dev/null; }
fi
cp -r deploy/compose "$scratch/compose"
"$scratch/compose/gen-secrets.sh" >/dev/null
for f in vault-acl.toml operators.toml vault-keyring.toml; do
    python3 -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' "$scratch/compose/secrets/$f"
done
(cd "$scratch/compose" && docker-compose -f compose.yaml config -q \
    && docker-compose -f compose.yaml --profile authentik --profile frappe config -q)

echo "==> Kubernetes"
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
    python3 -m pip install --user --quiet kubernetes-validate 2>/dev/null \
        || python3 -m pip install --user --quiet --break-system-packages kubernetes-validate
fi
manifests=$(ls deploy/k8s/*.yaml | grep -v -e kustomization.yaml -e nats-values.yaml)
# shellcheck disable=SC2086
python3 -c 'import sys; from kubernetes_validate.__main__ import main; sys.exit(main())' \
    --strict --quiet -k 1.30.0 $manifests
for f in deploy/k8s/kustomization.yaml deploy/k8s/nats-values.yaml; do
    python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$f"
done
# Every file kustomization.yaml lists exists.
python3 - <<'PY'
import os, yaml
k = yaml.safe_load(open("deploy/k8s/kustomization.yaml"))
missing = [r for r in k["resources"] if not os.path.exists(os.path.join("deploy/k8s", r))]
assert not missing, f"kustomization lists missing files: {missing}"
PY

echo "==> systemd"
root="$scratch/root"
mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
printf '#!/bin/sh\n' > "$root/usr/local/bin/tenantry"
chmod +x "$root/usr/local/bin/tenantry"
cp -r /lib/systemd/system "$root/usr/lib/systemd/system"
cp deploy/systemd/*.service deploy/systemd/*.target "$root/etc/systemd/system/"
out=""
for unit in deploy/systemd/*.service deploy/systemd/*.target; do
    out+=$(systemd-analyze verify --root="$root" "$(basename "$unit")" 2>&1 || true)
done
if [ -n "$out" ]; then
    echo "$out" >&2
    exit 1
fi
echo "deploy/ checks passed"
