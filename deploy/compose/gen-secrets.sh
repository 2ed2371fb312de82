#!/usr/bin/env bash
# Makes deploy/compose/secrets/: a CA and certificates for every service name, the vault's key
# ring, every caller's and operator's token with the hash files the services check them
# against, and the database and NATS passwords. Keeps what exists (run it again safely);
# prints the operator token once. Needs openssl and sha256sum.
set -euo pipefail
cd "$(dirname "$0")"
umask 077
mkdir -p secrets/tls
cd secrets

token() { [ -s "$1" ] || openssl rand -hex 32 | tr -d '\n' > "$1"; }
hash() { printf '%s' "$(cat "$1")" | sha256sum | cut -d' ' -f1; }

if [ ! -s tls/ca.pem ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=Tenantry CA" -keyout tls/ca-key.pem -out tls/ca.pem 2>/dev/null
fi
sign() { # name, SANs, extended key usage
  [ -s "tls/$1.pem" ] && return 0
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "tls/$1-key.pem" -out "tls/$1.csr" 2>/dev/null
  openssl x509 -req -in "tls/$1.csr" -CA tls/ca.pem -CAkey tls/ca-key.pem -CAcreateserial \
    -days 825 -out "tls/$1.pem" \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$2" "$3") 2>/dev/null
  rm -f "tls/$1.csr"
}
sign server "DNS:vault,DNS:signup,DNS:projection,DNS:billing,DNS:nats-1,DNS:nats-2,DNS:nats-3,DNS:localhost,IP:127.0.0.1" serverAuth,clientAuth
sign client "DNS:tenantry-client" clientAuth
chmod 0644 tls/*.pem
chmod 0600 tls/*-key.pem

for t in signup.vault-token provisioner.vault-token identity.vault-token billing.operator-token \
         operator.token nats-password postgres-password authentik-db-password \
         authentik-secret-key mariadb-root-password; do
  token "$t"
done
[ -s authentik-token ] || echo "put the Authentik API token here" > authentik-token
[ -s smtp-url ] || echo "smtp://mail.example.com:587" > smtp-url
[ -s vault-keyring.toml ] || printf 'active = "k1"\n[[keys]]\nid = "k1"\nkey = "%s"\n' \
  "$(openssl rand -base64 32)" > vault-keyring.toml
printf '*:*:*:tenantry:%s\n' "$(cat postgres-password)" > pgpass
printf 'authorization {\n  user: tenantry\n  password: "%s"\n}\n' "$(cat nats-password)" > nats-auth.conf
cat > vault-acl.toml <<TOML
[callers.signup]
token_sha256 = "$(hash signup.vault-token)"
[callers.provisioner]
token_sha256 = "$(hash provisioner.vault-token)"
[callers.identity]
token_sha256 = "$(hash identity.vault-token)"
TOML
cat > operators.toml <<TOML
[operators.billing]
token_sha256 = "$(hash billing.operator-token)"
role = "admin"
service = true
[operators.operator]
token_sha256 = "$(hash operator.token)"
role = "admin"
TOML
echo "secrets in $(pwd); tenantctl's token (TENANTRY_ADMIN_TOKEN): $(cat operator.token)"
