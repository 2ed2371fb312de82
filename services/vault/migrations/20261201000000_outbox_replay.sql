-- Events of committed changes, written in the change's transaction and published to JetStream
-- by the relay (at least once; the event id makes JetStream store it once). `seq` orders the
-- events of one tenant.
CREATE TABLE outbox (
    seq            BIGSERIAL PRIMARY KEY,
    event_id       UUID NOT NULL UNIQUE,
    tenant_id      TEXT NOT NULL,
    -- tenantry.v1.Event (occurred_at + body), protobuf-encoded. Names and versions only.
    event          BYTEA NOT NULL,
    correlation_id TEXT NOT NULL DEFAULT '',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX outbox_tenant ON outbox (tenant_id, seq);

-- One-time secrets taken with a request id, kept (sealed, with their data key) for the replay
-- window so a retried take whose answer was lost gets the same value. Deleting the data key
-- (purge, shred) deletes the row.
CREATE TABLE taken_one_time (
    id          UUID PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    caller      TEXT NOT NULL,
    data_key_id UUID NOT NULL REFERENCES data_keys (id) ON DELETE CASCADE,
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    taken_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    keep_until  TIMESTAMPTZ NOT NULL
);
CREATE INDEX taken_one_time_keep ON taken_one_time (keep_until);
CREATE INDEX taken_one_time_tenant ON taken_one_time (tenant_id);
