-- The read-model tables of one generation. `{schema}` is replaced by the generation's schema.
CREATE SCHEMA {schema};

-- Current state of each tenant: queryable columns plus the full folded state (JSONB) that the
-- next event is applied to.
CREATE TABLE {schema}.tenants (
    tenant_id     text PRIMARY KEY,
    status        text NOT NULL,
    subdomain     text NOT NULL,
    site          text NOT NULL,
    bench         text NOT NULL,
    plan          text NOT NULL,
    organisation  text NOT NULL,
    owner_email   text NOT NULL,
    owner_name    text NOT NULL,
    region        text NOT NULL,
    url           text NOT NULL,
    last_error    text,
    activation_ms bigint,
    activated_at  timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    -- Stream sequence of the last event that changed this tenant.
    last_sequence bigint NOT NULL,
    state         jsonb NOT NULL
);
-- Keyset paging is on (created_at, tenant_id), with or without a filter.
CREATE INDEX ON {schema}.tenants (created_at, tenant_id);
CREATE INDEX ON {schema}.tenants (status, created_at, tenant_id);
CREATE INDEX ON {schema}.tenants (plan, created_at, tenant_id);
CREATE INDEX ON {schema}.tenants (bench, created_at, tenant_id);

-- Every event, human-readable, keyed by its stream sequence (so a re-applied event is a no-op).
CREATE TABLE {schema}.tenant_history (
    sequence       bigint PRIMARY KEY,
    tenant_id      text NOT NULL,
    event_id       uuid NOT NULL,
    event_type     text NOT NULL,
    context        text NOT NULL,
    summary        text NOT NULL,
    occurred_at    timestamptz NOT NULL,
    correlation_id text NOT NULL,
    causation_id   text NOT NULL
);
CREATE INDEX ON {schema}.tenant_history (tenant_id, sequence);

-- The last stream sequence applied to this generation; written in the same transaction as the
-- change it covers.
CREATE TABLE {schema}.projection_checkpoint (
    name            text PRIMARY KEY,
    stream_sequence bigint NOT NULL
);
INSERT INTO {schema}.projection_checkpoint (name, stream_sequence) VALUES ('tenants', 0);
