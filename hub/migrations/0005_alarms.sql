-- Alarms: what people act on. The alert service (package alerts/) turns detections into
-- alarms; this schema is where its guarantees are enforced, so that they hold with any
-- number of alert workers and across restarts.

CREATE TABLE alarms (
    id                   bigserial   PRIMARY KEY,
    type                 text        NOT NULL,
    -- IEC 60601-1-8 alarm priorities: high (act at once), medium (act promptly), low (be aware).
    priority             text        NOT NULL CHECK (priority IN ('high', 'medium', 'low')),
    subject              text        NOT NULL,
    facility_id          text,
    room_id              text,
    resident_id          text,
    device_id            text,
    state                text        NOT NULL DEFAULT 'open'
                                     CHECK (state IN ('open', 'acknowledged', 'resolved')),
    -- Whether the alarm still takes repeats of its episode. Cleared on acknowledgement for
    -- types whose episode ends there (a second fall is a new alarm), and on resolution.
    live                 boolean     NOT NULL DEFAULT true,
    opened_at            timestamptz NOT NULL,  -- when the first detection happened
    last_seen_at         timestamptz NOT NULL,  -- when the newest repeat happened
    count                integer     NOT NULL DEFAULT 1 CHECK (count >= 1),
    acknowledged_at      timestamptz,
    acknowledged_by      text,
    acknowledged_channel text,
    resolved_at          timestamptz,
    resolved_by          text,
    resolved_channel     text,
    resolution           text        CHECK (resolution IN ('false_alarm', 'real_incident', 'test', 'cleared')),
    -- When the condition ended (a device back online, a leak dried up). Not a resolution:
    -- a person, or the hold-down sweep for the types that allow it, still resolves it.
    cleared_at           timestamptz,
    escalation_level     smallint    NOT NULL DEFAULT 0 CHECK (escalation_level >= 0),
    evidence             jsonb       NOT NULL DEFAULT '{}',
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT (live AND state = 'resolved')),
    CHECK ((state = 'resolved') = (resolved_at IS NOT NULL AND resolution IS NOT NULL)),
    CHECK (state <> 'acknowledged' OR acknowledged_at IS NOT NULL)
);

-- Exactly one live alarm per (subject, type): two alert workers, or a retry, racing on the
-- same episode meet here, and INSERT ... ON CONFLICT turns the loser into a repeat.
CREATE UNIQUE INDEX alarms_one_live ON alarms (subject, type) WHERE live;
CREATE INDEX alarms_unresolved ON alarms (opened_at DESC) WHERE state <> 'resolved';
CREATE INDEX alarms_facility_opened ON alarms (facility_id, opened_at DESC);
CREATE INDEX alarms_subject_type ON alarms (subject, type, id DESC);

-- Append-only audit of everything that happened to an alarm, and who did it.
CREATE TABLE alarm_events (
    id       bigserial   PRIMARY KEY,
    alarm_id bigint      NOT NULL REFERENCES alarms (id),
    at       timestamptz NOT NULL DEFAULT now(),
    action   text        NOT NULL,  -- opened, acknowledged, resolved, cleared, raised, escalated, reminded, ...
    actor    text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),  -- 'system' or a person
    channel  text        NOT NULL,  -- detector, sweep, cli, api, console, ...
    note     text        CHECK (length(note) <= 2000),
    detail   jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX alarm_events_alarm ON alarm_events (alarm_id, id);

CREATE FUNCTION alarm_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alarm_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER alarm_events_no_update BEFORE UPDATE OR DELETE ON alarm_events
    FOR EACH ROW EXECUTE FUNCTION alarm_events_append_only();
-- TRUNCATE bypasses row triggers; it needs its own statement trigger.
CREATE TRIGGER alarm_events_no_truncate BEFORE TRUNCATE ON alarm_events
    FOR EACH STATEMENT EXECUTE FUNCTION alarm_events_append_only();

-- A raised priority (a gas warning that becomes an alarm) is recorded whichever statement
-- raised it: the upsert that does it cannot see the previous priority in its RETURNING.
CREATE FUNCTION alarms_audit_priority() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alarm_events (alarm_id, action, actor, channel, detail)
    VALUES (NEW.id, 'raised', 'system', 'detector',
            jsonb_build_object('from', OLD.priority, 'to', NEW.priority));
    RETURN NULL;
END;
$$;
CREATE TRIGGER alarms_priority_raised AFTER UPDATE OF priority ON alarms
    FOR EACH ROW WHEN (OLD.priority IS DISTINCT FROM NEW.priority)
    EXECUTE FUNCTION alarms_audit_priority();

-- Which detections the alert service has applied. Workers claim pending rows with
-- FOR UPDATE SKIP LOCKED rather than following an id cursor: ids are handed out at insert,
-- but hub transactions commit out of order, so a cursor could pass a detection that
-- commits later with a lower id and never see it.
ALTER TABLE detections ADD COLUMN alerted_at timestamptz;
-- Detections stored before the alert service existed are history, not news: marking them
-- applied keeps an upgrade from opening an alarm for every one of them.
UPDATE detections SET alerted_at = detected_at;
CREATE INDEX detections_pending ON detections (id) WHERE alerted_at IS NULL;
