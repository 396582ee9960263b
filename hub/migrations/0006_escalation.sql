-- Escalation and notification: who is told about an alarm, when, and whether it reached them.
-- The timers live here, not in a process: the escalation sweep reads alarms.escalation_level
-- and the policies, so a restart of the alert service neither loses nor repeats a step.

-- People and desks that receive notifications. `url` is an apprise URL (mailto://, json://,
-- ntfy://, WeCom/DingTalk/Feishu bots, ...); it is checked when a message is sent, and a bad
-- one shows up as a failed delivery with the reason.
CREATE TABLE contacts (
    id          bigserial PRIMARY KEY,
    facility_id text      NOT NULL REFERENCES facilities (id),
    name        text      NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role        text      NOT NULL CHECK (role IN ('care_worker', 'supervisor', 'family', 'manager',
                                                   'regulator_desk', 'institution_desk')),
    -- A family contact belongs to one resident and hears only about that resident.
    resident_id text      REFERENCES residents (id),
    language    text      NOT NULL DEFAULT 'zh' CHECK (language IN ('zh', 'en')),
    url         text      NOT NULL CHECK (length(url) BETWEEN 1 AND 2000),
    active      boolean   NOT NULL DEFAULT true,
    CHECK ((role = 'family') = (resident_id IS NOT NULL))
);
CREATE INDEX contacts_facility_role ON contacts (facility_id, role) WHERE active;

-- Per facility and alarm type ('*' for any type): a list of steps
-- {"after_s": 60, "roles": ["supervisor"], "remind_every_s": 300}. A facility without a
-- policy uses the built-in default (alerts/escalation.py, docs/alerts.md).
CREATE TABLE escalation_policies (
    facility_id text  NOT NULL REFERENCES facilities (id),
    alarm_type  text  NOT NULL DEFAULT '*',
    steps       jsonb NOT NULL CHECK (jsonb_typeof(steps) = 'array' AND jsonb_array_length(steps) >= 1),
    PRIMARY KEY (facility_id, alarm_type)
);

-- escalation_level (from 0005) counts the steps taken and escalated_at is when the newest
-- was taken; reminders count the reminders sent after the last step, and reminded_at is when
-- the newest one went out. The sweep advances them with a compare-and-set, so two sweeps, or
-- a sweep replayed after a crash, take a step once. confirm_handled records that a fire or
-- gas alarm resolved as a real incident has had its regulator step (docs/alerts.md).
ALTER TABLE alarms
    ADD COLUMN escalated_at    timestamptz,
    ADD COLUMN reminders       integer NOT NULL DEFAULT 0 CHECK (reminders >= 0),
    ADD COLUMN reminded_at     timestamptz,
    ADD COLUMN confirm_handled boolean NOT NULL DEFAULT false;
-- Resolved alarms from before escalation existed are history, not news. Open ones are not:
-- nobody has been told about them yet, so the sweep starts their escalation.
UPDATE alarms SET confirm_handled = true WHERE state = 'resolved';
CREATE INDEX alarms_confirmed_pending ON alarms (id)
    WHERE resolution = 'real_incident' AND NOT confirm_handled;

-- The outbox: one row per message to one recipient, written in the same transaction as the
-- escalation step that caused it, and sent by the delivery worker.
CREATE TABLE notifications (
    id              bigserial   PRIMARY KEY,
    alarm_id        bigint      REFERENCES alarms (id),  -- NULL for a digest of several alarms
    contact_id      bigint      NOT NULL REFERENCES contacts (id),
    channel         text        NOT NULL,  -- the URL's scheme: mailto, json, ntfy, wecombot, ...
    kind            text        NOT NULL CHECK (kind IN ('alarm', 'escalation', 'reminder', 'digest')),
    step            integer,               -- the escalation step (or reminder number) that wrote it
    language        text        NOT NULL CHECK (language IN ('zh', 'en')),
    priority        text        NOT NULL CHECK (priority IN ('high', 'medium', 'low')),
    subject         text        NOT NULL DEFAULT '',
    body            text        NOT NULL DEFAULT '',
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'sent', 'failed', 'suppressed', 'digested')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    -- Held back by the per-recipient rate limit; sent in a digest when the window opens.
    held            boolean     NOT NULL DEFAULT false,
    digest_id       bigint      REFERENCES notifications (id),  -- the digest this one was folded into
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz,
    CHECK ((status = 'sent') = (sent_at IS NOT NULL)),
    CHECK (status <> 'digested' OR digest_id IS NOT NULL)
);
CREATE INDEX notifications_due ON notifications (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX notifications_alarm ON notifications (alarm_id, id);
CREATE INDEX notifications_contact_sent ON notifications (contact_id, sent_at DESC) WHERE status = 'sent';

-- Per-recipient rate limit: the next time a non-urgent message may go to this contact.
-- Reserved with INSERT ... ON CONFLICT ... WHERE, so two delivery workers cannot both take
-- the same window.
CREATE TABLE recipient_windows (
    contact_id bigint      PRIMARY KEY REFERENCES contacts (id),
    opens_at   timestamptz NOT NULL
);

-- The outbound MQTT topic (alerts/publish.py): the updated_at of the newest change the broker
-- acknowledged. A row whose updated_at differs is still to publish, across restarts.
ALTER TABLE alarms ADD COLUMN published_at timestamptz;
UPDATE alarms SET published_at = updated_at;  -- history, not news
CREATE INDEX alarms_unpublished ON alarms (updated_at) WHERE published_at IS DISTINCT FROM updated_at;
