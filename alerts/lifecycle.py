"""The alarm lifecycle, and all of its SQL: detections in, transitions, the hold-down sweep.

    open ──acknowledge──▶ acknowledged ──resolve──▶ resolved
      └───────────────────resolve───────────────────▶┘

Guarantees, and where each is enforced:

- **One live alarm per (subject, type).** The partial unique index ``alarms_one_live``;
  every detection goes through ``INSERT ... ON CONFLICT``, so two workers racing on one
  episode produce one alarm with a count of two, never two alarms. No in-process lock.
- **Every detection is applied exactly once.** ``apply_pending`` claims rows with
  ``FOR UPDATE SKIP LOCKED``, applies them and sets ``alerted_at`` in one transaction: a
  crash before the commit leaves them pending, and two workers never claim the same row.
- **Each transition is atomic and audited.** The change, its ``alarm_events`` row and the
  ``NOTIFY ankang_alarms`` commit together. Bad input is refused before anything is
  written (``alerts.errors``).
- **Order does not matter.** A repeat older than the clear it lost a race with does not
  undo the clear, and a clear older than the newest repeat does not clear it.

Within a batch, alarms are touched in (subject, type) order, so two workers lock rows in
the same order and cannot deadlock on each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from alerts.errors import AlarmNotFound, AlertsUnavailable, InvalidInput, TransitionRefused
from alerts.rules import RULES, Route, clearing_kinds, route

NOTE_MAX: Final = 2000
ACTOR_MAX: Final = 200
CHANNEL_MAX: Final = 40
# What a person may conclude. ``cleared`` is reserved for the sweep.
RESOLUTIONS: Final = ("false_alarm", "real_incident", "test")
SYSTEM: Final = "system"
NOTIFY_CHANNEL: Final = "ankang_alarms"

_ALARM_COLUMNS: Final = """
    id, type, priority, subject, facility_id, room_id, resident_id, device_id, state, live,
    opened_at, last_seen_at, count, acknowledged_at, acknowledged_by, resolved_at, resolved_by,
    resolution, cleared_at, evidence
"""


@dataclass(frozen=True, slots=True)
class Alarm:
    id: int
    type: str
    priority: str
    subject: str
    facility_id: str | None
    room_id: str | None
    resident_id: str | None
    device_id: str | None
    state: str
    live: bool
    opened_at: datetime
    last_seen_at: datetime
    count: int
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None
    cleared_at: datetime | None
    evidence: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Applied:
    """What one ``apply_pending`` call did."""

    detections: int  # claimed and marked applied (including those that raise nothing)
    opened: tuple[int, ...]  # ids of alarms it opened
    changed: tuple[int, ...]  # ids of every alarm it opened or changed


# -- detections in ------------------------------------------------------------------------

_CLAIM: Final = """
    SELECT id, kind, level, t, subject, facility_id, room_id, resident_id, device_id,
           confidence, window_start, window_end, detail
    FROM detections
    WHERE alerted_at IS NULL
    ORDER BY id
    LIMIT %s
    FOR UPDATE SKIP LOCKED
"""

_RAISE: Final = """
    INSERT INTO alarms (type, priority, subject, facility_id, room_id, resident_id, device_id,
                        opened_at, last_seen_at, evidence)
    VALUES (%(type)s, %(priority)s, %(subject)s, %(facility_id)s, %(room_id)s, %(resident_id)s,
            %(device_id)s, %(t)s, %(t)s, %(evidence)s)
    ON CONFLICT (subject, type) WHERE live DO UPDATE SET
        count = alarms.count + 1,
        last_seen_at = greatest(alarms.last_seen_at, EXCLUDED.last_seen_at),
        opened_at = least(alarms.opened_at, EXCLUDED.opened_at),
        -- a priority only goes up within an alarm (a gas warning, then the gas alarm); a
        -- raise on an acknowledged alarm reopens it and restarts its escalation from step 0,
        -- counted from this detection (0007; audited 'reopened' by a trigger)
        state = CASE WHEN alarm_reopens(alarms.state, alarms.priority, EXCLUDED.priority)
            THEN 'open' ELSE alarms.state END,
        acknowledged_at = CASE WHEN alarm_reopens(alarms.state, alarms.priority, EXCLUDED.priority)
            THEN NULL ELSE alarms.acknowledged_at END,
        acknowledged_by = CASE WHEN alarm_reopens(alarms.state, alarms.priority, EXCLUDED.priority)
            THEN NULL ELSE alarms.acknowledged_by END,
        acknowledged_channel = CASE WHEN alarm_reopens(alarms.state, alarms.priority, EXCLUDED.priority)
            THEN NULL ELSE alarms.acknowledged_channel END,
        escalation_level = CASE WHEN alarm_reopens(alarms.state, alarms.priority, EXCLUDED.priority)
            THEN 0 ELSE alarms.escalation_level END,
        escalated_at = CASE WHEN alarm_reopens(alarms.state, alarms.priority, EXCLUDED.priority)
            THEN NULL ELSE alarms.escalated_at END,
        reminders = CASE WHEN alarm_reopens(alarms.state, alarms.priority, EXCLUDED.priority)
            THEN 0 ELSE alarms.reminders END,
        reminded_at = CASE WHEN alarm_reopens(alarms.state, alarms.priority, EXCLUDED.priority)
            THEN NULL ELSE alarms.reminded_at END,
        escalation_from = CASE WHEN alarm_reopens(alarms.state, alarms.priority, EXCLUDED.priority)
            THEN EXCLUDED.last_seen_at ELSE alarms.escalation_from END,
        priority = CASE
            WHEN 'high' IN (alarms.priority, EXCLUDED.priority) THEN 'high'
            WHEN 'medium' IN (alarms.priority, EXCLUDED.priority) THEN 'medium'
            ELSE 'low' END,
        -- the condition is back, unless this repeat is older than the clear
        cleared_at = CASE WHEN alarms.cleared_at > EXCLUDED.last_seen_at THEN alarms.cleared_at END,
        facility_id = coalesce(alarms.facility_id, EXCLUDED.facility_id),
        room_id = coalesce(alarms.room_id, EXCLUDED.room_id),
        resident_id = coalesce(alarms.resident_id, EXCLUDED.resident_id),
        device_id = coalesce(alarms.device_id, EXCLUDED.device_id),
        evidence = CASE WHEN %(latest_evidence)s THEN EXCLUDED.evidence ELSE alarms.evidence END,
        updated_at = now()
    RETURNING id, (xmax = 0) AS opened
"""

# A clear ends the condition of every unresolved alarm of its type for that subject, the
# acknowledged ones included, so that a console can show that a bed exit ended.
# A repeat of an acknowledged ``until_resolved`` alarm without a hold-down (fire, gas) whose
# condition had ended before it (``cleared_at`` set, and not later than the repeat) is a new
# episode: the old alarm is resolved as ``cleared`` by ``system`` here, in the transaction of
# the upsert that then opens the new one. The row lock this takes serialises racing workers:
# the loser re-checks ``live`` after the winner commits, matches nothing, and its upsert
# becomes a repeat of the new alarm. The partial unique index still has the last word.
_END_EPISODE: Final = """
    UPDATE alarms SET state = 'resolved', live = false, resolved_at = now(), resolved_by = 'system',
                      resolved_channel = 'detector', resolution = 'cleared', updated_at = now()
    WHERE subject = %(subject)s AND type = %(type)s AND live AND state = 'acknowledged'
      AND cleared_at IS NOT NULL AND cleared_at <= %(t)s
    RETURNING id, cleared_at
"""

_CLEAR: Final = """
    UPDATE alarms SET cleared_at = %(t)s, updated_at = now()
    WHERE subject = %(subject)s AND type = %(type)s AND state <> 'resolved'
      AND cleared_at IS NULL AND last_seen_at <= %(t)s
    RETURNING id
"""

# The hub commits out of order: a device's "back online" can be applied before the older
# "offline" it ends. A raise therefore looks for a clear newer than itself that is already
# recorded, and takes it as the alarm's clear, so the hold-down still resolves the alarm.
_LATER_CLEAR: Final = """
    UPDATE alarms SET cleared_at = c.t, updated_at = now()
    FROM (SELECT max(t) AS t FROM detections
          WHERE subject = %(subject)s AND kind = ANY(%(kinds)s) AND level = 'clear' AND t > %(t)s) AS c
    WHERE alarms.id = %(id)s AND alarms.cleared_at IS NULL AND c.t IS NOT NULL AND alarms.last_seen_at <= c.t
    RETURNING c.t
"""

_AUDIT: Final = """
    INSERT INTO alarm_events (alarm_id, at, action, actor, channel, note, detail)
    VALUES (%s, coalesce(%s, now()), %s, %s, %s, %s, %s)
"""


@dataclass(frozen=True, slots=True)
class _Detection:
    id: int
    kind: str
    level: str
    t: datetime
    subject: str
    facility_id: str | None
    room_id: str | None
    resident_id: str | None
    device_id: str | None
    confidence: float
    window_start: datetime | None
    window_end: datetime | None
    detail: dict[str, Any]

    def evidence(self) -> dict[str, Any]:
        window = None
        if self.window_start is not None and self.window_end is not None:
            window = [self.window_start.isoformat(), self.window_end.isoformat()]
        return {
            "detection_id": self.id,
            "kind": self.kind,
            "level": self.level,
            "t": self.t.isoformat(),
            "confidence": self.confidence,
            "window": window,
            "detail": self.detail,
        }


_DEADLOCK_RETRIES: Final = 3
# SQLSTATE class 40: the transaction was rolled back and may simply be tried again. psycopg
# makes each of these a direct subclass of OperationalError (not of TransactionRollback), so
# they are named one by one and must be caught before OperationalError is taken for an outage.
RETRYABLE: Final = (
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
    psycopg.errors.TransactionRollback,
)


async def apply_pending(conn: AsyncConnection[Any], *, limit: int = 500) -> Applied:
    """Claim up to ``limit`` unapplied detections, oldest id first, and apply them.

    One transaction: the alarms, their audit rows, ``alerted_at`` and the notifications
    commit together or not at all. Rows another worker holds are skipped, not waited for.
    """
    for attempt in range(_DEADLOCK_RETRIES):
        try:
            return await _apply(conn, limit)
        except RETRYABLE as exc:
            # A deadlock or a serialization failure. Ordered locking makes this rare (several
            # rows of one key cleared at once); the rollback released the claim, so trying
            # again applies the batch once.
            if attempt == _DEADLOCK_RETRIES - 1:
                raise AlertsUnavailable(str(exc).strip() or type(exc).__name__) from exc
    raise AssertionError("unreachable")  # pragma: no cover


async def _apply(conn: AsyncConnection[Any], limit: int) -> Applied:
    try:
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(_CLAIM, (limit,))
            claimed = [_Detection(*row) for row in await cur.fetchall()]
            if not claimed:
                return Applied(0, (), ())
            steps: list[tuple[str, str, int, Route, _Detection]] = []
            for det in claimed:
                effect = route(det.kind, det.level)
                if effect is None:
                    continue
                if effect.raise_:
                    steps.append((det.subject, effect.type, det.id, effect, det))
                else:
                    steps.extend((det.subject, t, det.id, effect, det) for t in effect.clears)
            # (subject, type) order: every worker locks alarm rows in the same order.
            steps.sort(key=lambda s: (s[0], s[1], s[2]))
            opened: list[int] = []
            changed: set[int] = set()
            for _subject, alarm_type, _id, effect, det in steps:
                if effect.raise_:
                    alarm_id, is_new, ended = await _raise(cur, det, alarm_type, effect)
                    changed.add(alarm_id)
                    changed.update(ended)
                    if is_new:
                        opened.append(alarm_id)
                else:
                    changed.update(await _clear(cur, det, alarm_type))
            await cur.execute(
                "UPDATE detections SET alerted_at = now() WHERE id = ANY(%s)", ([d.id for d in claimed],)
            )
            for alarm_id in sorted(changed):
                await cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(alarm_id)))
    except RETRYABLE:
        raise  # a deadlock or serialization failure: apply_pending retries the batch
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise AlertsUnavailable(str(exc).strip() or type(exc).__name__) from exc
    return Applied(len(claimed), tuple(opened), tuple(sorted(changed)))


async def _raise(
    cur: psycopg.AsyncCursor[Any], det: _Detection, alarm_type: str, effect: Route
) -> tuple[int, bool, list[int]]:
    """Upsert the alarm; returns its id, whether it is new, and the ids of alarms whose
    episode this detection ended (see ``_END_EPISODE``)."""
    ended: list[int] = []
    rule = RULES.get(alarm_type)
    if rule is not None and rule.episode == "until_resolved" and rule.auto_resolve_after_s is None:
        await cur.execute(_END_EPISODE, {"subject": det.subject, "type": alarm_type, "t": det.t})
        for old_id, cleared_at in await cur.fetchall():
            ended.append(int(old_id))
            detail = {"resolution": "cleared", "cleared_at": cleared_at.isoformat(), "new_episode": det.id}
            await cur.execute(_AUDIT, (old_id, None, "resolved", SYSTEM, "detector", None, Jsonb(detail)))
    await cur.execute(
        _RAISE,
        {
            "type": alarm_type,
            "priority": effect.priority,
            "subject": det.subject,
            "facility_id": det.facility_id,
            "room_id": det.room_id,
            "resident_id": det.resident_id,
            "device_id": det.device_id,
            "t": det.t,
            "evidence": Jsonb(det.evidence()),
            "latest_evidence": rule is not None and rule.latest_evidence,
        },
    )
    row = await cur.fetchone()
    assert row is not None  # noqa: S101  (an upsert always returns its row)
    alarm_id, is_new = int(row[0]), bool(row[1])
    if is_new:
        await cur.execute(
            _AUDIT,
            (alarm_id, None, "opened", SYSTEM, "detector", None, Jsonb({"detection_id": det.id})),
        )
    kinds = clearing_kinds(alarm_type)
    if kinds:
        await cur.execute(
            _LATER_CLEAR, {"id": alarm_id, "subject": det.subject, "kinds": list(kinds), "t": det.t}
        )
        for (cleared_at,) in await cur.fetchall():
            detail = {"cleared_at": cleared_at.isoformat(), "applied_out_of_order": True}
            await cur.execute(_AUDIT, (alarm_id, None, "cleared", SYSTEM, "detector", None, Jsonb(detail)))
    return alarm_id, is_new, ended


async def _clear(cur: psycopg.AsyncCursor[Any], det: _Detection, alarm_type: str) -> list[int]:
    await cur.execute(_CLEAR, {"t": det.t, "subject": det.subject, "type": alarm_type})
    ids = [int(r[0]) for r in await cur.fetchall()]
    for alarm_id in ids:
        detail = {"detection_id": det.id, "kind": det.kind, "t": det.t.isoformat()}
        await cur.execute(_AUDIT, (alarm_id, None, "cleared", SYSTEM, "detector", None, Jsonb(detail)))
    return ids


# -- the hold-down sweep --------------------------------------------------------------------

_SWEEP: Final = """
    WITH rule AS (
        SELECT * FROM unnest(%(types)s::text[], %(hold)s::float8[]) AS r(type, hold_s)
    ), due AS (
        SELECT a.id FROM alarms a JOIN rule r ON r.type = a.type
        WHERE a.live AND a.cleared_at IS NOT NULL
          AND a.cleared_at <= %(now)s - make_interval(secs => r.hold_s)
        ORDER BY a.subject, a.type
        FOR UPDATE OF a SKIP LOCKED
    ), done AS (
        UPDATE alarms SET state = 'resolved', live = false, resolved_at = %(now)s,
                          resolved_by = 'system', resolved_channel = 'sweep',
                          resolution = 'cleared', updated_at = now()
        FROM due WHERE alarms.id = due.id
        RETURNING alarms.id, alarms.cleared_at
    ), audit AS (
        INSERT INTO alarm_events (alarm_id, at, action, actor, channel, detail)
        SELECT id, %(now)s, 'resolved', 'system', 'sweep',
               jsonb_build_object('resolution', 'cleared', 'cleared_at', cleared_at)
        FROM done
    )
    SELECT id FROM done ORDER BY id
"""


async def sweep(conn: AsyncConnection[Any], now: datetime) -> list[int]:
    """Resolve, as ``cleared``, every alarm whose condition has stayed cleared for its
    type's hold-down as of ``now``. Returns their ids. Types without a hold-down (fire,
    gas, SOS, falls, ...) are never touched."""
    held = [(t, r.auto_resolve_after_s) for t, r in RULES.items() if r.auto_resolve_after_s is not None]
    try:
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(
                _SWEEP, {"types": [t for t, _ in held], "hold": [s for _, s in held], "now": now}
            )
            ids = [int(r[0]) for r in await cur.fetchall()]
            for alarm_id in ids:
                await cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(alarm_id)))
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise AlertsUnavailable(str(exc).strip() or type(exc).__name__) from exc
    return ids


# -- transitions by people --------------------------------------------------------------------


def _check(actor: str, channel: str, note: str | None) -> None:
    if not actor.strip():
        raise InvalidInput("the actor is empty: say who acknowledges or resolves")
    if len(actor) > ACTOR_MAX:
        raise InvalidInput(f"the actor is {len(actor)} characters; at most {ACTOR_MAX}")
    if not channel.strip() or len(channel) > CHANNEL_MAX:
        raise InvalidInput(f"the channel must be 1 to {CHANNEL_MAX} characters")
    if note is not None and len(note) > NOTE_MAX:
        raise InvalidInput(f"the note is {len(note)} characters; at most {NOTE_MAX}")


async def _locked(cur: psycopg.AsyncCursor[Any], alarm_id: int) -> tuple[str, str, str | None]:
    await cur.execute("SELECT type, state, acknowledged_by FROM alarms WHERE id = %s FOR UPDATE", (alarm_id,))
    row = await cur.fetchone()
    if row is None:
        raise AlarmNotFound(f"no alarm {alarm_id}")
    return str(row[0]), str(row[1]), row[2]


async def acknowledge(
    conn: AsyncConnection[Any],
    alarm_id: int,
    actor: str,
    channel: str,
    note: str | None = None,
    *,
    at: datetime | None = None,
) -> Alarm:
    """open → acknowledged. For ``until_ack`` types the episode ends here: the next
    detection opens a new alarm."""
    _check(actor, channel, note)
    try:
        async with conn.transaction(), conn.cursor() as cur:
            alarm_type, state, by = await _locked(cur, alarm_id)
            if state == "acknowledged":
                raise TransitionRefused(f"alarm {alarm_id} is already acknowledged (by {by})")
            if state == "resolved":
                raise TransitionRefused(f"alarm {alarm_id} is already resolved")
            rule = RULES.get(alarm_type)
            ends_episode = rule is None or rule.episode == "until_ack"
            await cur.execute(
                """
                UPDATE alarms SET state = 'acknowledged', acknowledged_at = coalesce(%s, now()),
                                  acknowledged_by = %s, acknowledged_channel = %s,
                                  live = live AND NOT %s, updated_at = now()
                WHERE id = %s
                """,
                (at, actor, channel, ends_episode, alarm_id),
            )
            await cur.execute(_AUDIT, (alarm_id, at, "acknowledged", actor, channel, note, Jsonb({})))
            await cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(alarm_id)))
            return await _fetch(cur, alarm_id)
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise AlertsUnavailable(str(exc).strip() or type(exc).__name__) from exc


async def resolve(
    conn: AsyncConnection[Any],
    alarm_id: int,
    actor: str,
    channel: str,
    resolution: str,
    note: str | None = None,
    *,
    at: datetime | None = None,
) -> Alarm:
    """open or acknowledged → resolved, with a person's conclusion. Ends the episode."""
    if resolution not in RESOLUTIONS:
        raise InvalidInput(f"resolution {resolution!r} is not one of {', '.join(RESOLUTIONS)}")
    _check(actor, channel, note)
    try:
        async with conn.transaction(), conn.cursor() as cur:
            _type, state, _by = await _locked(cur, alarm_id)
            if state == "resolved":
                raise TransitionRefused(f"alarm {alarm_id} is already resolved")
            await cur.execute(
                """
                UPDATE alarms SET state = 'resolved', live = false, resolved_at = coalesce(%s, now()),
                                  resolved_by = %s, resolved_channel = %s, resolution = %s,
                                  updated_at = now()
                WHERE id = %s
                """,
                (at, actor, channel, resolution, alarm_id),
            )
            await cur.execute(
                _AUDIT, (alarm_id, at, "resolved", actor, channel, note, Jsonb({"resolution": resolution}))
            )
            await cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(alarm_id)))
            return await _fetch(cur, alarm_id)
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise AlertsUnavailable(str(exc).strip() or type(exc).__name__) from exc


# -- reading ------------------------------------------------------------------------------------


async def _fetch(cur: psycopg.AsyncCursor[Any], alarm_id: int) -> Alarm:
    await cur.execute(f"SELECT {_ALARM_COLUMNS} FROM alarms WHERE id = %s", (alarm_id,))  # noqa: S608
    row = await cur.fetchone()
    if row is None:
        raise AlarmNotFound(f"no alarm {alarm_id}")
    return Alarm(*row)


async def get_alarm(conn: AsyncConnection[Any], alarm_id: int) -> Alarm:
    async with conn.cursor() as cur:
        return await _fetch(cur, alarm_id)


async def list_alarms(
    conn: AsyncConnection[Any], *, include_resolved: bool = False, limit: int = 100
) -> Sequence[Alarm]:
    """Newest first; unresolved only unless ``include_resolved``."""
    query = f"""
        SELECT {_ALARM_COLUMNS} FROM alarms
        WHERE %s OR state <> 'resolved'
        ORDER BY opened_at DESC, id DESC
        LIMIT %s
    """  # noqa: S608  (a constant column list, no input)
    try:
        async with conn.cursor() as cur:
            await cur.execute(query, (include_resolved, limit))
            return [Alarm(*row) for row in await cur.fetchall()]
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise AlertsUnavailable(str(exc).strip() or type(exc).__name__) from exc
