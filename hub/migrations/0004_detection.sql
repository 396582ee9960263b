-- Detection: care settings the detectors read, what they detect, device health, and the
-- inactivity baselines learned from each resident's own history.

-- Night hours and bed rules per facility, in the facility's own time zone.
ALTER TABLE facilities
    ADD COLUMN night_start    time    NOT NULL DEFAULT '21:00',
    ADD COLUMN night_end      time    NOT NULL DEFAULT '06:00',
    ADD COLUMN bed_return_min integer NOT NULL DEFAULT 15 CHECK (bed_return_min BETWEEN 1 AND 720),
    ADD COLUMN bed_absent_min integer NOT NULL DEFAULT 180 CHECK (bed_absent_min BETWEEN 10 AND 720);

-- Per-resident vital-sign ranges; NULL means the default range (docs/detection.md).
ALTER TABLE residents
    ADD COLUMN hr_low  real CHECK (hr_low > 0),
    ADD COLUMN hr_high real CHECK (hr_high > hr_low),
    ADD COLUMN rr_low  real CHECK (rr_low > 0),
    ADD COLUMN rr_high real CHECK (rr_high > rr_low);

-- One row per detection. `key` is derived from the detection itself, so a batch that is
-- redelivered after a crash records the same detections once.
CREATE TABLE detections (
    id           bigserial   PRIMARY KEY,
    key          text        NOT NULL UNIQUE,
    kind         text        NOT NULL,
    level        text        NOT NULL CHECK (level IN ('alarm', 'prealarm', 'warning', 'info', 'clear')),
    t            timestamptz NOT NULL,
    subject      text        NOT NULL,
    facility_id  text,
    room_id      text,
    resident_id  text,
    device_id    text,
    confidence   real        NOT NULL,
    window_start timestamptz,
    window_end   timestamptz,
    detail       jsonb       NOT NULL DEFAULT '{}',
    detected_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX detections_facility_t ON detections (facility_id, t DESC);
CREATE INDEX detections_subject_t ON detections (subject, t DESC);

-- The hub's current view of each device. Written when a state changes, and last_seen
-- at most every few seconds, so that a restarted hub resumes instead of starting blind.
CREATE TABLE device_health (
    device_id   text        PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    online      boolean     NOT NULL,
    since       timestamptz NOT NULL,
    last_seen   timestamptz,
    battery_low boolean     NOT NULL DEFAULT false,
    tamper      boolean     NOT NULL DEFAULT false,
    fault       boolean     NOT NULL DEFAULT false,
    fault_since timestamptz,
    stuck       boolean     NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Periods without any activity from a resident, as the inactivity detector saw them end.
CREATE TABLE inactivity_gaps (
    resident_id text        NOT NULL,
    started     timestamptz NOT NULL,
    seconds     real        NOT NULL CHECK (seconds >= 0),
    local_hour  smallint    NOT NULL CHECK (local_hour BETWEEN 0 AND 23),
    PRIMARY KEY (resident_id, started)
);

-- Per resident and local hour of day: how long a quiet spell may last before it is unusual.
CREATE TABLE inactivity_baselines (
    resident_id text        NOT NULL,
    local_hour  smallint    NOT NULL CHECK (local_hour BETWEEN 0 AND 23),
    threshold_s real        NOT NULL,
    samples     integer     NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resident_id, local_hour)
);

-- Fire-safety coverage (智慧消防全覆盖): a room is covered when at least one smoke detector
-- in it is online, reporting and without an open fault.
CREATE VIEW room_fire_coverage AS
SELECT r.facility_id,
       r.id AS room_id,
       r.kind AS room_kind,
       count(d.id) AS smoke_detectors,
       count(d.id) FILTER (
           WHERE h.online AND NOT h.fault AND NOT h.stuck AND NOT h.tamper
       ) AS working,
       count(d.id) FILTER (
           WHERE h.online AND NOT h.fault AND NOT h.stuck AND NOT h.tamper
       ) > 0 AS covered
FROM rooms r
LEFT JOIN devices d ON d.facility_id = r.facility_id AND d.room_id = r.id AND d.kind = 'smoke_detector'
LEFT JOIN device_health h ON h.device_id = d.id
GROUP BY r.facility_id, r.id, r.kind;
