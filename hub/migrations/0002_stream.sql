-- What the hub stores from the stream. Every accepted message has one row in `messages`,
-- unique on (device_id, ts, seq): that key makes redelivery idempotent. The other tables
-- hold the message bodies and are written only for messages that were new.

CREATE TABLE messages (
    device_id   text        NOT NULL,
    ts          timestamptz NOT NULL,
    seq         bigint      NOT NULL,
    channel     text        NOT NULL,
    received_at timestamptz NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now(),
    worker      smallint    NOT NULL DEFAULT 0
);
SELECT ankang_hypertable('messages', 'ts', interval '1 day');
CREATE UNIQUE INDEX messages_key ON messages (device_id, ts, seq);

-- Scalars, one row per metric value ("narrow"), so that new metrics need no migration.
CREATE TABLE readings (
    device_id text             NOT NULL,
    ts        timestamptz      NOT NULL,
    metric    text             NOT NULL,
    value     double precision NOT NULL
);
SELECT ankang_hypertable('readings', 'ts', interval '1 day');
CREATE INDEX readings_device_metric_ts ON readings (device_id, metric, ts DESC);

-- Raw wearable blocks, kept so that the seconds around an incident can be replayed.
-- acc and gyro are little-endian float32, row-major n x 3 (x, y, z), as sent.
CREATE TABLE waveforms (
    device_id text        NOT NULL,
    ts        timestamptz NOT NULL,
    seq       bigint      NOT NULL,
    rate_hz   real        NOT NULL,
    n         integer     NOT NULL,
    acc       bytea       NOT NULL,
    gyro      bytea
);
SELECT ankang_hypertable('waveforms', 'ts', interval '1 hour');
CREATE INDEX waveforms_device_ts ON waveforms (device_id, ts DESC);

CREATE TABLE events (
    device_id text        NOT NULL,
    ts        timestamptz NOT NULL,
    seq       bigint      NOT NULL,
    event     text        NOT NULL,
    detail    jsonb
);
SELECT ankang_hypertable('events', 'ts', interval '7 days');
CREATE INDEX events_device_ts ON events (device_id, ts DESC);

CREATE TABLE statuses (
    device_id   text        NOT NULL,
    ts          timestamptz NOT NULL,
    seq         bigint      NOT NULL,
    state       text        NOT NULL,
    fw          text,
    heartbeat_s integer
);
SELECT ankang_hypertable('statuses', 'ts', interval '7 days');
CREATE INDEX statuses_device_ts ON statuses (device_id, ts DESC);

-- Input that failed the contract, kept verbatim with the reason.
CREATE TABLE quarantine (
    received_at timestamptz NOT NULL,
    topic       text        NOT NULL,
    device_id   text,
    reason      text        NOT NULL,
    payload     bytea       NOT NULL
);
SELECT ankang_hypertable('quarantine', 'received_at', interval '7 days');
CREATE INDEX quarantine_device ON quarantine (device_id, received_at DESC);
