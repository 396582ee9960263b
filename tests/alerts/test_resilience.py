"""One bad policy, row or failing call must not stop the alert service's loops."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta

import psycopg
import pytest

from alerts import AlertService, AlertsUnavailable, InvalidInput, parse_steps
from alerts.publish import AlarmPublisher
from alerts.templates import TEMPLATES
from devices.mqtt import MqttEndpoint
from hub.settings import Settings
from lab.localservices import free_port
from tests.support import scalar

from .test_escalation import contact, outbox, policy, raise_alarm, registry, run_escalate, staff
from .test_lifecycle import T0


def test_policy_seconds_are_capped_at_a_week():
    week = 7 * 86400
    assert parse_steps([{"after_s": week, "roles": ["supervisor"], "remind_every_s": week}])
    with pytest.raises(InvalidInput, match="after_s"):
        parse_steps([{"after_s": 1e12, "roles": ["supervisor"]}])
    with pytest.raises(InvalidInput, match="remind_every_s"):
        parse_steps([{"after_s": 0, "roles": ["supervisor"], "remind_every_s": week + 1}])


def test_a_stored_policy_with_a_huge_after_s_does_not_stop_the_sweep(database):
    registry(database)
    staff(database)
    # Stored as an older version, or by hand, would have: bypassing set_policy's check.
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO escalation_policies (facility_id, alarm_type, steps) VALUES ('fac-1', 'fall',"
            ' \'[{"after_s": 0, "roles": ["care_worker"]}, {"after_s": 1e12, "roles": ["supervisor"]}]\')'
        )
    fall = raise_alarm(database, "fall", "w-a", T0, resident="r-a", device="w-a")
    fire = raise_alarm(database, "fire", "fac-1/101", T0)

    run_escalate(database, T0)
    run_escalate(database, T0 + timedelta(seconds=60))

    # The invalid policy falls back to the default; the other alarm is escalated too.
    assert outbox(database, fall)[:2] == [
        ("care", "alarm", 0, "pending"),
        ("super", "escalation", 1, "pending"),
    ]
    assert outbox(database, fire) == [("care", "alarm", 0, "pending"), ("super", "escalation", 1, "pending")]


class _BrokenEnglish(Mapping[str, tuple[str, str]]):
    """Templates whose English entry blows up: a bug that only some alarms hit."""

    def __getitem__(self, key: str) -> tuple[str, str]:
        if key == "en":
            raise RuntimeError("template store is broken")
        return TEMPLATES[key]

    def __iter__(self) -> Iterator[str]:
        return iter(TEMPLATES)

    def __len__(self) -> int:
        return len(TEMPLATES)


def test_an_alarm_whose_escalation_fails_is_skipped_and_the_others_go_on(database):
    registry(database)
    contact(database, "care", "care_worker")
    contact(database, "family-a", "family", resident="r-a", language="en")
    policy(database, "fac-1", [{"after_s": 0, "roles": ["family"]}], alarm_type="fall")
    fall = raise_alarm(database, "fall", "w-a", T0, resident="r-a", device="w-a")
    fire = raise_alarm(database, "fire", "fac-1/101", T0)

    taken = run_escalate(database, T0, templates=_BrokenEnglish())

    assert [t.alarm_id for t in taken] == [fire]
    assert outbox(database, fire) == [("care", "alarm", 0, "pending")]
    # The failed step rolled back: it is taken on a later sweep, once the bug is gone.
    assert scalar(database, "SELECT escalation_level FROM alarms WHERE id = %s", (fall,)) == 0
    run_escalate(database, T0 + timedelta(seconds=1))
    assert outbox(database, fall) == [("family-a", "alarm", 0, "pending")]


def test_publishing_on_a_dropped_connection_is_unavailable_not_a_crash():
    async def scenario() -> None:
        endpoint = MqttEndpoint(host="127.0.0.1", port=free_port())  # nobody listens
        async with AlarmPublisher(endpoint, timeout_s=0.5) as publisher:
            # The connection dropped after publish() checked it: paho refuses the message.
            publisher._connected.set()
            with pytest.raises(AlertsUnavailable, match=r"publishing to .* failed"):
                await publisher.publish("ankang/v1/alerts/fac-1/fire", b"{}")

    asyncio.run(scenario())


def test_a_loop_that_fails_with_any_exception_backs_off_and_keeps_running(database):
    registry(database)
    contact(database, "care", "care_worker")
    calls = [0]

    def clock() -> datetime:
        # The injected clock stands for any failing call in the loops' work.
        calls[0] += 1
        if calls[0] <= 6:
            raise RuntimeError("clock is broken")
        return T0

    async def scenario() -> None:
        service = AlertService(
            Settings(database_url=database),
            clock=clock,
            poll_s=0.05,
            sweep_s=0.05,
            escalate_s=0.05,
            deliver_s=0.05,
            retry_max_s=0.1,
        )
        # Raised (and applied here) before the service starts: its consumer would otherwise race
        # this test's own apply for the detection.
        await asyncio.to_thread(raise_alarm, database, "fire", "fac-1/101", T0)
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop, apply_migrations=False), name="test.alerts")
        for _ in range(200):
            if runner.done():
                break
            if await asyncio.to_thread(scalar, database, "SELECT count(*) FROM notifications"):
                break
            await asyncio.sleep(0.05)
        assert not runner.done(), runner.exception()
        assert calls[0] > 6
        stop.set()
        await asyncio.wait_for(runner, 10)

    asyncio.run(scenario())
    assert scalar(database, "SELECT count(*) FROM notifications") == 1


def test_a_deadlock_while_applying_is_retried_not_reported_as_an_outage(database):
    # PostgreSQL itself raises the deadlock (SQLSTATE 40P01), on the first alarm insert only:
    # a sequence is not rolled back with the transaction it was used in.
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE test_deadlock_once")
        conn.execute(
            """
            CREATE FUNCTION test_deadlock_once() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('test_deadlock_once') = 1 THEN
                    RAISE EXCEPTION 'deadlock detected (test)' USING ERRCODE = '40P01';
                END IF;
                RETURN NEW;
            END;
            $$
            """
        )
        conn.execute(
            "CREATE TRIGGER test_deadlock_once BEFORE INSERT ON alarms"
            " FOR EACH ROW EXECUTE FUNCTION test_deadlock_once()"
        )
    registry(database)
    fire = raise_alarm(database, "fire", "fac-1/101", T0)  # applies through apply_pending

    assert scalar(database, "SELECT count(*) FROM alarms") == 1
    assert scalar(database, "SELECT state FROM alarms WHERE id = %s", (fire,)) == "open"
    assert scalar(database, "SELECT count(*) FROM detections WHERE alerted_at IS NULL") == 0
    assert scalar(database, "SELECT last_value FROM test_deadlock_once") == 2


@pytest.mark.parametrize("sqlstate", [psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure])
def test_rollback_errors_are_classified_as_retryable(sqlstate):
    from alerts.lifecycle import RETRYABLE

    assert issubclass(sqlstate, RETRYABLE)
    assert issubclass(sqlstate, psycopg.OperationalError)  # why they must be caught first
