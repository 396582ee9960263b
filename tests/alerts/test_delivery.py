"""Delivery through apprise to real local receivers: SMTP, webhooks, retries, rate limits, kill -9."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import apprise
import psycopg
import pytest

from alerts import Delivered, DeliveryPolicy, RecipientStatus, deliver_due, delivery_status
from tests.conftest import run_cli
from tests.support import rows, scalar, wait_until

from .test_escalation import contact, policy, raise_alarm, registry, run_escalate
from .test_lifecycle import T0, ack
from .test_service import AlertsProcess

S = timedelta(seconds=1)


def deliver(url: str, now: datetime, policy: DeliveryPolicy | None = None) -> Delivered:
    async def run() -> Delivered:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await deliver_due(conn, now, policy=policy)

    return asyncio.run(run())


def status(url: str, alarm_id: int) -> list[RecipientStatus]:
    async def run() -> list[RecipientStatus]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return list(await delivery_status(conn, alarm_id))

    return asyncio.run(run())


def test_an_email_reaches_a_real_smtp_server_in_the_contacts_language(database, smtp):
    registry(database)
    contact(database, "nurse-li", "care_worker", target=smtp.url("li@example.org"))
    contact(database, "nurse-smith", "care_worker", language="en", target=smtp.url("smith@example.org"))
    fall = raise_alarm(database, "fall", "w-a", T0, resident="r-a", device="w-a")
    run_escalate(database, T0)

    done = deliver(database, T0)
    assert len(done.sent) == 2, rows(database, "SELECT last_error FROM notifications")
    wait_until(lambda: len(smtp.mails) == 2, 10, "two mails")
    by_to = {m.recipients[0]: m for m in smtp.mails}
    li, smith = by_to["li@example.org"], by_to["smith@example.org"]
    assert li.subject == "[紧急] 跌倒：王芳，青岛颐和养老院，101 房间，A 床"
    assert f"确认请执行：ankang alarms ack {fall}" in li.body
    assert "2026-11-28 10:00:00" in li.body
    assert smith.subject.startswith("[URGENT] Fall: 王芳")
    assert "Where: 青岛颐和养老院, room 101, bed A" in smith.body
    assert [(s.contact, s.status, s.attempts) for s in status(database, fall)] == [
        ("nurse-li", "sent", 1),
        ("nurse-smith", "sent", 1),
    ]
    assert deliver(database, T0 + S) == Delivered()  # nothing is sent twice


def test_a_channel_that_is_down_is_retried_with_backoff_then_failed_without_blocking_others(
    database, webhook
):
    registry(database)
    contact(database, "desk", "care_worker", target=webhook.url("/ok"))
    contact(database, "down", "care_worker", target=webhook.url("/down"))
    contact(database, "typo", "care_worker", target="jsonn://127.0.0.1/x")
    webhook.failing.add("/down")
    fall = raise_alarm(database, "fall", "w-a", T0, resident="r-a", device="w-a")
    run_escalate(database, T0)
    rules = DeliveryPolicy(max_attempts=4, backoff_s=5, backoff_max_s=15)

    first = deliver(database, T0, rules)
    assert (len(first.sent), len(first.retrying), len(first.failed)) == (1, 1, 1)
    (posted,) = webhook.to("/ok")
    assert posted["title"].startswith("[紧急] 跌倒")
    assert "王芳" in posted["message"]

    # 5 s, 10 s, then the cap of 15 s; nothing is tried before it is due.
    now = T0
    for wait in (5, 10, 15):
        assert deliver(database, now + (wait - 1) * S, rules) == Delivered()
        now += wait * S
        deliver(database, now, rules)
    assert len(webhook.to("/down")) == 4
    assert deliver(database, now + timedelta(hours=1), rules) == Delivered()

    by_contact = {s.contact: s for s in status(database, fall)}
    assert by_contact["desk"].status == "sent"
    down = by_contact["down"]
    assert (down.status, down.attempts) == ("failed", 4)
    assert down.last_error is not None
    assert "gave up after 4 attempts" in down.last_error
    assert "500" in down.last_error
    typo = by_contact["typo"]
    assert (typo.status, typo.attempts) == ("failed", 1)
    assert typo.last_error is not None
    assert "cannot use this contact URL" in typo.last_error


def test_one_message_per_recipient_per_minute_and_the_rest_in_one_digest(database, webhook):
    registry(database)
    contact(database, "care", "care_worker", language="en", target=webhook.url("/care"))
    exits = [raise_alarm(database, "bed_exit", f"bed-{i}", T0 + i * S, resident="r-a") for i in range(4)]
    run_escalate(database, T0 + 5 * S)

    first = deliver(database, T0 + 5 * S)
    assert len(first.sent) == 1
    assert len(first.deferred) == 3
    # A fall is urgent: it goes at once, window or not.
    fall = raise_alarm(database, "fall", "w-a", T0 + 6 * S, resident="r-a", device="w-a")
    run_escalate(database, T0 + 6 * S)
    assert len(deliver(database, T0 + 6 * S).sent) == 1
    assert deliver(database, T0 + 64 * S) == Delivered()  # the window is still closed
    # The fall counted as a message too: the window opens a minute after it.
    assert deliver(database, T0 + 65 * S).sent == []

    digest = deliver(database, T0 + 66 * S)
    assert len(digest.sent) == 1
    assert len(digest.digested) == 3
    posts = webhook.to("/care")
    assert len(posts) == 3  # one bed exit, the fall, one digest
    assert posts[1]["title"].startswith("[URGENT] Fall")
    assert posts[2]["title"] == "3 more alarms"
    assert posts[2]["message"].count("Out of bed, not back") == 3

    (held,) = status(database, exits[3])
    assert (held.status, held.digest_status) == ("digested", "sent")
    assert [s.status for s in status(database, fall)] == ["sent"]
    out = run_cli("alarms", "show", str(exits[3]), env={"ANKANG_DATABASE_URL": database}).stdout
    assert "bed_exit" in out
    assert "digested into #" in out
    assert "(sent)" in out


def test_alarms_show_lists_each_recipient_and_why_a_message_failed(database):
    registry(database)
    contact(database, "typo", "care_worker", target="jsonn://127.0.0.1/x")
    fall = raise_alarm(database, "fall", "w-a", T0, resident="r-a", device="w-a")
    run_escalate(database, T0)
    deliver(database, T0)
    env = {"ANKANG_DATABASE_URL": database}
    out = run_cli("alarms", "show", str(fall), env=env).stdout
    assert "care_worker" in out
    assert "typo" in out
    assert "failed" in out
    assert "cannot use this contact URL" in out
    proc = run_cli("alarms", "show", "999999", env=env, check=False)
    assert proc.returncode == 2
    assert "no alarm 999999" in proc.stderr


def test_kill_9_between_steps_neither_loses_nor_repeats_a_step(database, webhook):
    registry(database)
    for role in ("care_worker", "supervisor", "manager"):
        contact(database, role, role, target=webhook.url(f"/{role}"))
    steps: list[dict[str, Any]] = [
        {"after_s": 0, "roles": ["care_worker"]},
        {"after_s": 5, "roles": ["supervisor"]},
        {"after_s": 8, "roles": ["manager"]},
    ]
    policy(database, "fac-1", steps)

    def level() -> int:
        return int(scalar(database, "SELECT coalesce(max(escalation_level), 0) FROM alarms"))

    def sent() -> int:
        return int(scalar(database, "SELECT count(*) FROM notifications WHERE status = 'sent'"))

    alerts = AlertsProcess(database)
    try:
        opened = time.monotonic()
        raise_alarm(database, "sos", "b-1", datetime.now(UTC), resident="r-a")
        # Killed after the first step and its message, before the second step is due. (A
        # kill during a send is covered by the lease test below.)
        wait_until(lambda: level() == 1 and sent() == 1, 10, "the first step sent")
        alerts.kill()  # SIGKILL: no shutdown, no drain
        assert alerts.proc.returncode == -9
        assert time.monotonic() - opened < 5, "killed too late to fall between the steps"
        alerts = AlertsProcess(database)  # a new process, with nothing but the database to go by
        wait_until(lambda: level() == 2 and sent() == 2, 15, "the second step after the restart")
        alerts.kill()
        alerts = AlertsProcess(database)
        wait_until(lambda: level() == 3 and sent() == 3, 15, "the third step")
        alerts.stop()
    finally:
        alerts.kill()
    assert rows(
        database,
        "SELECT c.role, n.step, count(*) FROM notifications n JOIN contacts c ON c.id = n.contact_id"
        " GROUP BY c.role, n.step ORDER BY n.step",
    ) == [("care_worker", 0, 1), ("supervisor", 1, 1), ("manager", 2, 1)]
    assert [
        r[0]
        for r in rows(
            database, "SELECT detail->>'step' FROM alarm_events WHERE action = 'escalated' ORDER BY id"
        )
    ] == ["0", "1", "2"]
    for role in ("care_worker", "supervisor", "manager"):
        assert webhook.to(f"/{role}"), role


def test_a_worker_that_dies_mid_send_leaves_the_message_to_come_back_after_its_lease(database, webhook):
    registry(database)
    contact(database, "care", "care_worker", target=webhook.url("/care"))
    fall = raise_alarm(database, "fall", "w-a", T0, resident="r-a", device="w-a")
    run_escalate(database, T0)
    rules = DeliveryPolicy(lease_s=120)

    async def dies(url: str, subject: str, body: str, timeout_s: float) -> None:
        raise SystemExit("the worker dies while the channel has the message")

    async def crash() -> None:
        async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
            await deliver_due(conn, T0, policy=rules, send=dies)

    with pytest.raises(SystemExit):
        asyncio.run(crash())
    (leased,) = status(database, fall)
    assert (leased.status, leased.attempts) == ("pending", 1)
    assert deliver(database, T0 + 119 * S, rules) == Delivered()  # still leased
    assert len(deliver(database, T0 + 120 * S, rules).sent) == 1
    (done,) = status(database, fall)
    assert (done.status, done.attempts) == ("sent", 2)
    assert len(webhook.to("/care")) == 1


def test_a_reminder_that_is_acknowledged_before_it_goes_is_suppressed(database, webhook):
    registry(database)
    contact(database, "care", "care_worker", target=webhook.url("/care"))
    policy(database, "fac-1", [{"after_s": 0, "roles": ["care_worker"], "remind_every_s": 300}])
    fall = raise_alarm(database, "fall", "w-a", T0, resident="r-a", device="w-a")
    run_escalate(database, T0)
    deliver(database, T0)
    run_escalate(database, T0 + 300 * S)
    ack(database, fall)
    done = deliver(database, T0 + 300 * S)
    assert len(done.suppressed) == 1
    assert [(s.kind, s.status, s.last_error) for s in status(database, fall)] == [
        ("alarm", "sent", None),
        ("reminder", "suppressed", "acknowledged before it was sent"),
    ]
    assert len(webhook.to("/care")) == 1


def _queue(url: str, contact_id: int, priority: str, subject: str, due: datetime, n: int = 1) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(n):
            conn.execute(
                "INSERT INTO notifications (contact_id, channel, kind, language, priority, subject, body,"
                " next_attempt_at, created_at) VALUES (%s, 'json', 'alarm', 'zh', %s, %s, 'b', %s, %s)",
                (contact_id, priority, subject, due, due),
            )


def test_a_hanging_channel_does_not_hold_up_a_fire_message_to_someone_else(database, webhook):
    registry(database)
    hung = contact(database, "hung", "care_worker", target=webhook.url("/hung"))
    desk = contact(database, "desk", "supervisor", target=webhook.url("/desk"))
    webhook.slow["/hung"] = 1.5
    rules = DeliveryPolicy(send_timeout_s=0.5, concurrency=2)
    # A backlog of urgent messages to a channel that hangs, all older than the fire message.
    _queue(database, hung, "high", "backlog", T0, n=10)
    _queue(database, desk, "high", "FIRE", T0 + S)
    # apprise loads its plugins on first use; that is not the channel's time.
    warm = apprise.Apprise()
    warm.add(webhook.url("/warm"))
    assert warm.notify(title="warm", body="up")

    start = time.monotonic()
    done = deliver(database, T0 + 2 * S, rules)

    (fire_at,) = [t for p, t in webhook.arrivals if p == "/desk"]
    hung_arrivals = sorted(t for p, t in webhook.arrivals if p == "/hung")
    # Before, the fire waited for 10 / 2 rounds of 0.5 s timeouts (about 2.5 s). Now the hung
    # channel holds one slot, one message at a time, and the fire goes at once: allow a
    # generous three send timeouts.
    assert fire_at - start < 3 * rules.send_timeout_s, (fire_at - start, hung_arrivals[:3])
    assert fire_at < hung_arrivals[1]  # it did not queue behind the backlog
    assert len(done.sent) == 1, rows(
        database, "SELECT id, last_error FROM notifications WHERE contact_id = %s", (desk,)
    )
    assert len(done.retrying) == 10  # every backlog message was tried once, and will be again


def test_high_priority_is_claimed_before_older_lower_priority_messages(database, webhook):
    registry(database)
    low = contact(database, "low", "care_worker", target=webhook.url("/low"))
    med = contact(database, "med", "care_worker", target=webhook.url("/med"))
    high = contact(database, "high", "supervisor", target=webhook.url("/high"))
    _queue(database, low, "low", "battery", T0)
    _queue(database, med, "medium", "bed exit", T0 + S)
    _queue(database, high, "high", "FIRE", T0 + 2 * S)

    done = deliver(database, T0 + 3 * S, DeliveryPolicy(concurrency=1))

    assert len(done.sent) == 3
    with webhook.lock:
        assert [p for p, _ in webhook.arrivals] == ["/high", "/med", "/low"]
