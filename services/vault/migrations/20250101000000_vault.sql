-- Vault storage. Tables live in the service's own schema (see Store::connect), so the vault can
-- share a database with other services without sharing a migration history.

-- One data key per secret (and per one-time secret), wrapped by a key-encryption key (KEK).
-- Crypto-shredding a tenant deletes its rows here; the ciphertexts left elsewhere are then noise.
CREATE TABLE data_keys (
    id           UUID PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    kek_id       TEXT NOT NULL,
    wrapped_key  BYTEA NOT NULL,
    key_nonce    BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    rewrapped_at TIMESTAMPTZ
);
CREATE INDEX data_keys_tenant ON data_keys (tenant_id);
-- Rotation scans for keys not yet under the active KEK.
CREATE INDEX data_keys_kek ON data_keys (kek_id, id);

-- The latest version of each secret. A revoked secret keeps its row (version counter, revoked_at)
-- but loses ciphertext and data key, so versions stay monotonic across revoke + put.
CREATE TABLE secrets (
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    data_key_id UUID REFERENCES data_keys (id) ON DELETE SET NULL,
    nonce       BYTEA,
    ciphertext  BYTEA,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, name)
);
CREATE UNIQUE INDEX secrets_data_key ON secrets (data_key_id);

-- In-flight secrets (e.g. the owner's password between signup and provisioning).
CREATE TABLE one_time_secrets (
    id          UUID PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    data_key_id UUID NOT NULL REFERENCES data_keys (id) ON DELETE CASCADE,
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX one_time_secrets_expiry ON one_time_secrets (expires_at);
CREATE INDEX one_time_secrets_tenant ON one_time_secrets (tenant_id);

-- Tenants whose keys were destroyed: Get answers "shredded" and Put is refused.
CREATE TABLE shredded_tenants (
    tenant_id        TEXT PRIMARY KEY,
    shredded_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    secrets_shredded INTEGER NOT NULL
);

-- Every call, allowed or not. Never holds a secret value.
CREATE TABLE audit_log (
    id             BIGSERIAL PRIMARY KEY,
    at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    caller         TEXT NOT NULL,
    operation      TEXT NOT NULL,
    tenant_id      TEXT NOT NULL DEFAULT '',
    secret_name    TEXT NOT NULL DEFAULT '',
    outcome        TEXT NOT NULL,
    reason         TEXT NOT NULL DEFAULT '',
    detail         TEXT NOT NULL DEFAULT '',
    correlation_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, at);
CREATE INDEX audit_log_caller ON audit_log (caller, at);
CREATE INDEX audit_log_at ON audit_log (at);

-- The audit log is append-only: a bug (or an injected statement) cannot rewrite history.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
