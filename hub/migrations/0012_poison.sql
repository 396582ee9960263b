-- One device must not be able to stop the hub (docs/architecture.md, "Failure isolation").
--
-- Quarantine keeps a bounded excerpt of each payload with its size and SHA-256, instead of
-- payloads of up to the broker's limit, and says what kind of rule it broke.
ALTER TABLE quarantine
    ADD COLUMN kind           text,
    ADD COLUMN payload_size   integer,
    ADD COLUMN payload_sha256 bytea;

-- Messages the hub could not handle after several tries. They are acknowledged into this
-- table, so that the broker does not redeliver them forever.
CREATE TABLE dead_letters (
    received_at    timestamptz NOT NULL,
    topic          text        NOT NULL,
    device_id      text,
    stage          text        NOT NULL,
    attempts       integer     NOT NULL,
    reason         text        NOT NULL,
    payload        bytea       NOT NULL,
    payload_size   integer     NOT NULL,
    payload_sha256 bytea       NOT NULL
);
SELECT ankang_hypertable('dead_letters', 'received_at', interval '7 days');
CREATE INDEX dead_letters_device ON dead_letters (device_id, received_at DESC);
