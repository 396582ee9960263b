-- Fixes to the alarm lifecycle and escalation (docs/alerts.md).
--
-- A priority raise on an acknowledged alarm (a gas warning that was acknowledged, then the
-- gas alarm) reopens it: the state goes back to 'open' and the escalation starts again from
-- step 0. Its steps then count from escalation_from (when the raise happened) rather than
-- from opened_at, so that they are not all overdue at once. NULL means opened_at.
ALTER TABLE alarms ADD COLUMN escalation_from timestamptz;

-- The reopening is audited whichever statement does it, like a priority raise (0005): the
-- upsert that reopens cannot see the previous state in its RETURNING.
CREATE FUNCTION alarms_audit_reopened() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alarm_events (alarm_id, action, actor, channel, detail)
    VALUES (NEW.id, 'reopened', 'system', 'detector',
            jsonb_build_object('priority', NEW.priority,
                               'acknowledged_by', OLD.acknowledged_by,
                               'acknowledged_at', OLD.acknowledged_at));
    RETURN NULL;
END;
$$;
CREATE TRIGGER alarms_reopened AFTER UPDATE OF state ON alarms
    FOR EACH ROW WHEN (OLD.state = 'acknowledged' AND NEW.state = 'open')
    EXECUTE FUNCTION alarms_audit_reopened();

-- Whether a repeat with priority new_priority reopens an alarm in old_state with old_priority.
CREATE FUNCTION alarm_reopens(old_state text, old_priority text, new_priority text)
    RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT old_state = 'acknowledged'
       AND array_position(ARRAY['low', 'medium', 'high'], new_priority)
         > array_position(ARRAY['low', 'medium', 'high'], old_priority)
$$;
