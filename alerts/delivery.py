"""Delivery: the outbox worker that sends notifications through apprise, and its SQL.

``deliver_due`` is one pass of the worker:

1. **Claim** due rows (``status = 'pending' AND next_attempt_at <= now``) with ``FOR UPDATE
   SKIP LOCKED``, so that two workers never take the same row.
2. **Rate-limit per recipient.** A contact gets at most one message per ``window_s``
   (``recipient_windows``, reserved with a conditional upsert). A message that finds the
   window closed waits until it opens; when it opens, the messages that waited are folded
   into one digest ("3 more alarms: ...") and marked ``digested``. High-priority alarms
   (IEC 60601-1-8 high: fire, gas alarm, SOS, fall) bypass the limit, and so does a retry
   of a message that failed; both still count as a message for the window.
   A reminder whose alarm was acknowledged meanwhile, or a message to a contact who was
   deactivated, is ``suppressed`` with the reason instead.
3. **Lease** what is to be sent (``attempts + 1``, ``next_attempt_at = now + lease_s``) and
   commit, so that no lock is held while a channel is slow.
4. **Send** each message through apprise in a thread of the worker's own pool, concurrently,
   each bounded by ``send_timeout_s`` from the start of its thread. A pass claims only as many
   rows as there are free slots, high priority first, one message per contact at a time, and
   claims again as each send ends: a channel that is down or hangs holds up only its own
   messages.
5. **Record**, as each send ends, ``sent``, or a retry with exponential backoff
   (``backoff_s`` doubling, capped at ``backoff_max_s``), or ``failed`` with the reason after
   ``max_attempts`` or at once for a URL that apprise cannot use.

Delivery is at least once: a worker killed after a channel took a message but before it
recorded ``sent`` sends it again when the lease runs out. A notification is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import apprise
import psycopg
from psycopg import AsyncConnection

from alerts.errors import AlertsUnavailable, DeliveryFailed
from alerts.lifecycle import NOTIFY_CHANNEL
from alerts.templates import render_digest

log = logging.getLogger(__name__)

ERROR_MAX: Final = 1000


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    window_s: float = 60.0  # at most one message per recipient per minute, digests after that
    bypass_priorities: tuple[str, ...] = ("high",)
    max_attempts: int = 6
    backoff_s: float = 5.0
    backoff_max_s: float = 300.0
    # Longer than a send may take (up to send_timeout_s waiting for a thread, then up to
    # send_timeout_s sending) plus a margin: a crashed worker's rows come back soon after it.
    lease_s: float = 75.0
    send_timeout_s: float = 30.0
    concurrency: int = 8

    def backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.backoff_s * 2 ** max(attempts - 1, 0), self.backoff_max_s))


Sender = Callable[[str, str, str, float], Awaitable[None]]


def _send_blocking(url: str, subject: str, body: str) -> None:
    notifier = apprise.Apprise()
    if not notifier.add(url):
        raise DeliveryFailed(
            "apprise cannot use this contact URL (unknown scheme or bad syntax)", permanent=True
        )
    result = notifier.notify(title=subject, body=body)
    if result:
        return
    reasons: list[str] = []
    with contextlib.suppress(AttributeError, TypeError):
        # apprise ≥ 2 records each attempt's log lines on the result.
        reasons = [str(getattr(e, "message", e)) for e in result.logs()]
    raise DeliveryFailed("; ".join(reasons) or "the channel did not take the message")


async def _send_in(executor: ThreadPoolExecutor, url: str, subject: str, body: str, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    started = asyncio.Event()

    def work() -> None:
        loop.call_soon_threadsafe(started.set)
        _send_blocking(url, subject, body)

    future = loop.run_in_executor(executor, work)
    try:
        try:
            # Waiting for a free thread is not the channel's time; it is bounded all the same.
            await asyncio.wait_for(started.wait(), timeout_s)
        except TimeoutError as exc:
            future.cancel()
            raise DeliveryFailed(f"no free sender thread within {timeout_s:g} s") from exc
        await asyncio.wait_for(future, timeout_s)
    except TimeoutError as exc:
        raise DeliveryFailed(f"no answer from the channel within {timeout_s:g} s") from exc
    except DeliveryFailed:
        raise
    except Exception as exc:  # a plugin's own bug must fail this message, not the worker
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc


@functools.cache
def _pool(concurrency: int) -> ThreadPoolExecutor:
    # Twice the concurrency: a send that timed out keeps its thread until the channel's own
    # socket timeout ends it, and must not take a thread from the next send.
    return ThreadPoolExecutor(max_workers=2 * concurrency, thread_name_prefix="ankang-send")


def _default_sender(concurrency: int) -> Sender:
    async def send(url: str, subject: str, body: str, timeout_s: float) -> None:
        await _send_in(_pool(concurrency), url, subject, body, timeout_s)

    return send


async def apprise_send(url: str, subject: str, body: str, timeout_s: float) -> None:
    """Send one message through apprise; ``DeliveryFailed`` with the reason if it did not go.

    apprise is blocking (requests, smtplib), so it runs in a thread of the delivery worker's
    own pool (not the event loop's default executor, which other work shares). A thread cannot
    be cancelled: on timeout the worker stops waiting and records a failure, and the thread
    ends on the channel's own socket timeout. The timeout counts from the thread's start.
    """
    await _send_in(_pool(DeliveryPolicy().concurrency), url, subject, body, timeout_s)


@dataclass(frozen=True, slots=True)
class _Due:
    id: int
    alarm_id: int | None
    contact_id: int
    channel: str
    kind: str
    language: str
    priority: str
    subject: str
    body: str
    attempts: int
    url: str
    active: bool
    waited: bool  # held back once by the rate limit: goes out in a digest when the window opens
    alarm_state: str


@dataclass(slots=True)
class Delivered:
    """What one ``deliver_due`` pass did (notification ids)."""

    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    digested: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    suppressed: list[int] = field(default_factory=list)


_CLAIM: Final = """
    SELECT n.id, n.alarm_id, n.contact_id, n.channel, n.kind, n.language, n.priority, n.subject,
           n.body, n.attempts, c.url, c.active, n.held, coalesce(a.state, 'open')
    FROM notifications n
    JOIN contacts c ON c.id = n.contact_id
    LEFT JOIN alarms a ON a.id = n.alarm_id
    WHERE n.status = 'pending' AND n.next_attempt_at <= %(now)s AND n.contact_id <> ALL(%(busy)s)
    ORDER BY CASE n.priority WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END,
             n.next_attempt_at, n.id
    LIMIT %(limit)s
    FOR UPDATE OF n SKIP LOCKED
"""

# The rest of a held burst for the contacts just claimed: they go out together as one digest.
_CLAIM_HELD: Final = """
    SELECT n.id, n.alarm_id, n.contact_id, n.channel, n.kind, n.language, n.priority, n.subject,
           n.body, n.attempts, c.url, c.active, n.held, coalesce(a.state, 'open')
    FROM notifications n
    JOIN contacts c ON c.id = n.contact_id
    LEFT JOIN alarms a ON a.id = n.alarm_id
    WHERE n.status = 'pending' AND n.held AND n.next_attempt_at <= %(now)s
      AND n.contact_id = ANY(%(contacts)s) AND n.id <> ALL(%(ids)s)
    ORDER BY n.next_attempt_at, n.id
    FOR UPDATE OF n SKIP LOCKED
"""

# Take the contact's window if it is open; returns nothing if it is still closed.
_RESERVE: Final = """
    INSERT INTO recipient_windows (contact_id, opens_at) VALUES (%(contact)s, %(until)s)
    ON CONFLICT (contact_id) DO UPDATE SET opens_at = EXCLUDED.opens_at
    WHERE recipient_windows.opens_at <= %(now)s
    RETURNING opens_at
"""

# An urgent message goes anyway, and still counts for the window.
_PUSH: Final = """
    INSERT INTO recipient_windows (contact_id, opens_at) VALUES (%(contact)s, %(until)s)
    ON CONFLICT (contact_id) DO UPDATE
    SET opens_at = greatest(recipient_windows.opens_at, EXCLUDED.opens_at)
"""

_DIGEST: Final = """
    INSERT INTO notifications (alarm_id, contact_id, channel, kind, language, priority, subject, body,
                               next_attempt_at, created_at)
    VALUES (NULL, %s, %s, 'digest', %s, %s, %s, %s, %s, %s)
    RETURNING id
"""

_PRIORITY_ORDER: Final = {"high": 2, "medium": 1, "low": 0}


async def _claim(
    conn: AsyncConnection[Any],
    now: datetime,
    policy: DeliveryPolicy,
    limit: int,
    busy: set[int],
    out: Delivered,
) -> tuple[list[_Due], int]:
    """Claim up to ``limit`` due rows, none for a contact in ``busy``; returns what to send
    (at most one message per contact) and how many rows the claim query returned."""
    window = timedelta(seconds=policy.window_s)
    to_send: list[_Due] = []
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(_CLAIM, {"now": now, "busy": sorted(busy), "limit": limit})
        due = [_Due(*row) for row in await cur.fetchall()]
        returned = len(due)
        normal = sorted({n.contact_id for n in due if not _bypasses(n, policy)})
        if normal:
            await cur.execute(_CLAIM_HELD, {"now": now, "contacts": normal, "ids": [n.id for n in due]})
            due.extend(_Due(*row) for row in await cur.fetchall())
        held: dict[int, list[_Due]] = {}
        sending: set[int] = set()  # one message per contact at a time: a dead channel takes one slot
        for n in due:
            stale = n.kind == "reminder" and n.alarm_state != "open"
            if not n.active or stale:
                # "Still open" is no longer true, or the person is no longer a recipient.
                reason = "the contact was deactivated" if not n.active else "acknowledged before it was sent"
                await cur.execute(
                    "UPDATE notifications SET status = 'suppressed', last_error = %s WHERE id = %s",
                    (reason, n.id),
                )
                out.suppressed.append(n.id)
            elif _bypasses(n, policy):
                if n.contact_id in sending:
                    continue  # left pending; claimed once this contact's send is done
                sending.add(n.contact_id)
                await cur.execute(_PUSH, {"contact": n.contact_id, "until": now + window})
                to_send.append(n)
            else:
                held.setdefault(n.contact_id, []).append(n)
        for contact_id, group in sorted(held.items()):
            if contact_id in sending:
                continue  # left pending, as above
            await cur.execute(_RESERVE, {"contact": contact_id, "until": now + window, "now": now})
            reserved = await cur.fetchone() is not None
            if reserved and len(group) == 1:
                to_send.append(group[0])
                continue
            if not reserved or not any(n.waited for n in group):
                # A burst: the oldest goes now (if the window is open), the rest wait for
                # the window and then go as one digest.
                if reserved:
                    to_send.append(group[0])
                waiting = group[1:] if reserved else group
                await cur.execute(
                    "SELECT opens_at FROM recipient_windows WHERE contact_id = %s", (contact_id,)
                )
                row = await cur.fetchone()
                opens = row[0] if row is not None else now + window
                await cur.execute(
                    "UPDATE notifications SET next_attempt_at = %s, held = true WHERE id = ANY(%s)",
                    (opens, [n.id for n in waiting]),
                )
                out.deferred.extend(n.id for n in waiting)
                continue
            first = group[0]
            priority = max((n.priority for n in group), key=lambda p: _PRIORITY_ORDER.get(p, 0))
            subject, body = render_digest([n.subject for n in group], first.language)
            await cur.execute(
                _DIGEST,
                (contact_id, first.channel, first.language, priority, subject, body, now, now),
            )
            row = await cur.fetchone()
            assert row is not None  # noqa: S101  (INSERT ... RETURNING)
            digest_id = int(row[0])
            await cur.execute(
                "UPDATE notifications SET status = 'digested', digest_id = %s WHERE id = ANY(%s)",
                (digest_id, [n.id for n in group]),
            )
            out.digested.extend(n.id for n in group)
            to_send.append(
                _Due(digest_id, None, contact_id, first.channel, "digest", first.language, priority,
                     subject, body, 0, first.url, True, False, "open")
            )  # fmt: skip
        if to_send:
            await cur.execute(
                "UPDATE notifications SET attempts = attempts + 1, next_attempt_at = %s WHERE id = ANY(%s)",
                (now + timedelta(seconds=policy.lease_s), [n.id for n in to_send]),
            )
    return to_send, returned


def _bypasses(n: _Due, policy: DeliveryPolicy) -> bool:
    return n.priority in policy.bypass_priorities or n.attempts > 0 or policy.window_s <= 0


async def deliver_due(
    conn: AsyncConnection[Any],
    now: datetime,
    *,
    policy: DeliveryPolicy | None = None,
    send: Sender | None = None,
    limit: int = 100,
    clock: Callable[[], datetime] | None = None,
) -> Delivered:
    """One pass of the delivery worker at ``now`` (see the module docstring).

    Claims only as many rows as there are free send slots (``policy.concurrency``), high
    priority first, at most one message per contact at a time, and records each result as it
    comes, claiming again whenever a slot frees up: a slow or dead channel holds one slot, not
    the pass. ``clock`` (if given) gives the time of each later claim, so that a message that
    falls due during a long pass is claimed in it. At most ``limit`` rows are claimed.
    """
    policy = policy or DeliveryPolicy()
    sender = send or _default_sender(policy.concurrency)
    out = Delivered()
    in_flight: dict[asyncio.Task[DeliveryFailed | None], _Due] = {}
    claimed = 0
    more = True

    def at() -> datetime:
        return now if clock is None else clock()

    try:
        while True:
            ask = min(policy.concurrency - len(in_flight), limit - claimed)
            if more and ask > 0:
                busy = {n.contact_id for n in in_flight.values()}
                batch, returned = await _claim(conn, at(), policy, ask, busy, out)
                claimed += returned
                more = returned >= ask  # a full claim: there may be more due
                for n in batch:
                    task = asyncio.create_task(_attempt(sender, n, policy.send_timeout_s))
                    in_flight[task] = n
                if more:
                    continue
            if not in_flight:
                break
            done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                n = in_flight.pop(task)
                await _record(conn, n, task.result(), at(), policy, out)
            more = True  # a slot, and a contact, are free again
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise AlertsUnavailable(str(exc).strip() or type(exc).__name__) from exc
    finally:
        for task in in_flight:
            task.cancel()
    return out


async def _attempt(send: Sender, n: _Due, timeout_s: float) -> DeliveryFailed | None:
    try:
        await send(n.url, n.subject, n.body, timeout_s)
    except DeliveryFailed as exc:
        return exc
    return None


async def _record(
    conn: AsyncConnection[Any],
    n: _Due,
    error: DeliveryFailed | None,
    now: datetime,
    policy: DeliveryPolicy,
    out: Delivered,
) -> None:
    """Record one send's outcome, in its own transaction, as soon as it is known."""
    attempts = n.attempts + 1
    async with conn.transaction(), conn.cursor() as cur:
        if error is None:
            await cur.execute(
                "UPDATE notifications SET status = 'sent', sent_at = %s, last_error = NULL WHERE id = %s",
                (now, n.id),
            )
            out.sent.append(n.id)
        else:
            reason = str(error)[:ERROR_MAX]
            if not error.permanent and attempts < policy.max_attempts:
                await cur.execute(
                    "UPDATE notifications SET last_error = %s, next_attempt_at = %s WHERE id = %s",
                    (reason, now + policy.backoff(attempts), n.id),
                )
                out.retrying.append(n.id)
                return
            reason = reason if error.permanent else f"gave up after {attempts} attempts: {reason}"
            await cur.execute(
                "UPDATE notifications SET status = 'failed', last_error = %s WHERE id = %s",
                (reason[:ERROR_MAX], n.id),
            )
            out.failed.append(n.id)
            log.warning("notification %d to contact %d failed: %s", n.id, n.contact_id, reason)
        if n.alarm_id is not None:
            await cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(n.alarm_id)))


# -- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """Where one message about an alarm stands, for the console and ``ankang alarms show``."""

    notification_id: int
    contact_id: int
    contact: str
    role: str
    channel: str
    kind: str
    step: int | None
    status: str  # pending, sent, failed, suppressed, digested
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    digest_id: int | None
    digest_status: str | None  # for a digested message: how its digest fared


async def delivery_status(conn: AsyncConnection[Any], alarm_id: int) -> Sequence[RecipientStatus]:
    """Every message about ``alarm_id``, oldest first, with its recipient and outcome."""
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                """
                SELECT n.id, n.contact_id, c.name, c.role, n.channel, n.kind, n.step, n.status,
                       n.attempts, coalesce(n.last_error, d.last_error), n.created_at,
                       coalesce(n.sent_at, d.sent_at), n.digest_id, d.status
                FROM notifications n
                JOIN contacts c ON c.id = n.contact_id
                LEFT JOIN notifications d ON d.id = n.digest_id
                WHERE n.alarm_id = %s
                ORDER BY n.id
                """,
                (alarm_id,),
            )
            return [RecipientStatus(*row) for row in await cur.fetchall()]
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise AlertsUnavailable(str(exc).strip() or type(exc).__name__) from exc
