-- The device registry: facility -> room -> bed, residents and devices.

DO $$
BEGIN
    -- TimescaleDB is used when the server preloads it; plain PostgreSQL works too (the demo).
    IF current_setting('shared_preload_libraries', true) LIKE '%timescaledb%' THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
    END IF;
END
$$;

-- Turns a table into a hypertable when TimescaleDB is present; a no-op otherwise.
CREATE OR REPLACE FUNCTION ankang_hypertable(tbl regclass, time_column name, chunk interval)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable(tbl, time_column, chunk_time_interval => chunk, if_not_exists => true);
    END IF;
END
$$;

CREATE TABLE facilities (
    id            text PRIMARY KEY,
    name          text NOT NULL DEFAULT '',
    kind          text NOT NULL DEFAULT 'institution' CHECK (kind IN ('institution', 'home')),
    tz            text NOT NULL DEFAULT 'Asia/Shanghai',
    district      text NOT NULL DEFAULT '',
    supervisor_id text REFERENCES facilities (id),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rooms (
    facility_id text NOT NULL REFERENCES facilities (id) ON DELETE CASCADE,
    id          text NOT NULL,
    name        text NOT NULL DEFAULT '',
    kind        text NOT NULL DEFAULT 'bedroom',
    PRIMARY KEY (facility_id, id)
);

CREATE TABLE residents (
    id          text PRIMARY KEY,
    facility_id text NOT NULL REFERENCES facilities (id),
    name        text NOT NULL DEFAULT ''
);

CREATE TABLE beds (
    facility_id text NOT NULL,
    room_id     text NOT NULL,
    id          text NOT NULL,
    nursing     boolean NOT NULL DEFAULT false,
    resident_id text REFERENCES residents (id),
    PRIMARY KEY (facility_id, room_id, id),
    FOREIGN KEY (facility_id, room_id) REFERENCES rooms (facility_id, id) ON DELETE CASCADE
);

CREATE TABLE devices (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    kind        text NOT NULL CHECK (kind IN ('wearable', 'bed_sensor', 'smoke_detector', 'gas_detector',
                                              'sos_button', 'door_contact', 'water_leak', 'motion_sensor')),
    facility_id text NOT NULL REFERENCES facilities (id),
    room_id     text,
    bed_id      text,
    resident_id text REFERENCES residents (id),
    heartbeat_s integer NOT NULL CHECK (heartbeat_s BETWEEN 1 AND 86400),
    placement   text CHECK (placement IN ('waist', 'chest', 'wrist')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (facility_id, room_id) REFERENCES rooms (facility_id, id),
    FOREIGN KEY (facility_id, room_id, bed_id) REFERENCES beds (facility_id, room_id, id)
);
CREATE INDEX devices_facility ON devices (facility_id);
