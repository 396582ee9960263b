"""Escalation: who is told about an alarm and when, driven from the database, and its SQL.

A policy is a list of steps per facility and alarm type (``escalation_policies``; ``'*'``
for any type), each ``{"after_s": 60, "roles": ["supervisor"], "remind_every_s": 300}``.
A facility without one uses ``default_steps``.

The sweep (``escalate``) runs every second on an injected clock. For each open alarm whose
next step is due (``opened_at + steps[escalation_level].after_s <= now``) it takes the step
in one transaction:

1. ``UPDATE alarms SET escalation_level = level + 1 ... WHERE id = %s AND escalation_level
   = level AND state = 'open'`` (a compare-and-set: a second sweep, or one replayed after a
   crash, matches no row and does nothing);
2. one ``notifications`` row (the outbox) per recipient, with the rendered text;
3. an ``escalated`` audit row, and ``NOTIFY`` for the console and the delivery worker.

A ``kill -9`` before the commit leaves the level where it was and the step is taken on the
next start; after the commit the level says it was taken. Either way, once.

After the last step, an alarm that is still open gets a reminder to the last step's roles
every ``remind_every_s`` (audited ``reminded``), never more often: the next one is due that
long after the previous one (or after the last step), whatever the sweep's rhythm.

``after_s`` counts from ``escalation_from`` when a priority raise reopened the alarm
(0007), else from ``opened_at``. While the alarm's condition is cleared (``cleared_at`` set,
no repeat since) only step 0 is taken: no later step and no reminder, until a repeat.
A failure while escalating one alarm is logged and that alarm skipped; the others go on.

Acknowledging stops the escalation. A fire or gas alarm that a person resolves as
``real_incident`` is confirmed: the step that names ``regulator_desk`` (if the policy has
one not yet taken) is taken then, once (``confirm_handled``).

Recipients: contacts of the alarm's facility with the step's roles. ``family`` contacts only
for an alarm about their own resident (``contacts.resident_id = alarms.resident_id``); in a
home care bed (facility kind ``home``), an alarm without a resident (a fire in the home)
also goes to the home's family. ``institution_desk`` contacts are those of the supervising
institution (``facilities.supervisor_id``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from alerts.errors import AlertsUnavailable, InvalidInput, TemplateError
from alerts.lifecycle import NOTIFY_CHANNEL
from alerts.templates import LANGUAGES, TEMPLATES, MessageFields, render

log = logging.getLogger(__name__)

ROLES: Final = ("care_worker", "supervisor", "family", "manager", "regulator_desk", "institution_desk")
NOTIFY_OUTBOX: Final = "ankang_notifications"
# Confirmation by a person forwards these to the regulator's desk (GB 50440: a confirmed
# fire alarm goes on to the 119 centre).
CONFIRM_FORWARDS: Final = ("fire", "gas")
STEPS_MAX: Final = 20
# No step or reminder interval longer than a week: a larger number overflows the datetime
# arithmetic of the sweep, and no alarm should wait that long for its next tier anyway.
SECONDS_MAX: Final = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Step:
    after_s: float
    roles: tuple[str, ...]
    remind_every_s: float | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"after_s": self.after_s, "roles": list(self.roles)}
        if self.remind_every_s is not None:
            out["remind_every_s"] = self.remind_every_s
        return out


def parse_steps(raw: Any) -> tuple[Step, ...]:
    """Validate a policy's steps; ``InvalidInput`` says what is wrong."""
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("a policy is a non-empty list of steps")
    if len(raw) > STEPS_MAX:
        raise InvalidInput(f"a policy has at most {STEPS_MAX} steps")
    steps: list[Step] = []
    previous = -1.0
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidInput(f"step {i} is not an object")
        unknown = set(item) - {"after_s", "roles", "remind_every_s"}
        if unknown:
            raise InvalidInput(f"step {i} has unknown keys {sorted(unknown)}")
        after = item.get("after_s")
        if not isinstance(after, int | float) or isinstance(after, bool) or not 0 <= after <= SECONDS_MAX:
            raise InvalidInput(f"step {i}: after_s must be a number of seconds from 0 to {SECONDS_MAX:g}")
        if after < previous:
            raise InvalidInput(f"step {i}: after_s must not be earlier than the step before")
        roles = item.get("roles")
        if not isinstance(roles, list) or not roles or not all(r in ROLES for r in roles):
            raise InvalidInput(f"step {i}: roles must be a non-empty list of {', '.join(ROLES)}")
        remind = item.get("remind_every_s")
        if remind is not None and (
            not isinstance(remind, int | float) or isinstance(remind, bool) or not 1 <= remind <= SECONDS_MAX
        ):
            raise InvalidInput(
                f"step {i}: remind_every_s must be a number of seconds from 1 to {SECONDS_MAX:g}"
            )
        steps.append(Step(float(after), tuple(roles), None if remind is None else float(remind)))
        previous = float(after)
    return tuple(steps)


# The built-in policy, for a facility that has none. Reminders every 5 min while still open.
REMIND_S: Final = 300.0


# Alarms about the system itself rather than about a resident or a room (IEC 60601-1-8).
TECHNICAL: Final = frozenset({"ingest_delayed"})


def default_steps(alarm_type: str, priority: str, facility_kind: str) -> tuple[Step, ...]:
    """What a facility without a policy gets (docs/alerts.md, "Escalation")."""
    if alarm_type in TECHNICAL:
        # The hub is behind: the staff on site, who must look in person meanwhile, not the
        # families; for a home care bed, the supervising institution's duty desk.
        return (Step(0, ("institution_desk",) if facility_kind == "home" else ("care_worker", "supervisor")),)
    if priority == "low":
        # Low battery, tamper: be aware (IEC 60601-1-8). Told once, no escalation.
        return (Step(0, ("family",) if facility_kind == "home" else ("care_worker",)),)
    if facility_kind == "home":
        # A home care bed: the family first, then the supervising institution's duty desk.
        return (Step(0, ("family",)), Step(60, ("institution_desk",), REMIND_S))
    steps = [
        Step(0, ("care_worker",)),
        Step(60, ("supervisor",)),
        Step(180, ("family", "manager"), REMIND_S),
    ]
    if alarm_type == "fire":
        steps.append(Step(300, ("regulator_desk",), REMIND_S))
    return tuple(steps)


# -- contacts and policies --------------------------------------------------------------------


async def add_contact(
    conn: AsyncConnection[Any],
    facility_id: str,
    name: str,
    role: str,
    url: str,
    *,
    language: str = "zh",
    resident_id: str | None = None,
) -> int:
    """Register a recipient; returns its id. A family contact names its resident."""
    if role not in ROLES:
        raise InvalidInput(f"role {role!r} is not one of {', '.join(ROLES)}")
    if language not in LANGUAGES:
        raise InvalidInput(f"language {language!r} is not one of {', '.join(LANGUAGES)}")
    if (role == "family") != (resident_id is not None):
        raise InvalidInput("a family contact, and only a family contact, names a resident")
    if not name.strip() or len(name) > 200:
        raise InvalidInput("a contact's name is 1 to 200 characters")
    if "://" not in url or len(url) > 2000:
        raise InvalidInput("a contact's url is an apprise URL such as mailtos://... or json://...")
    try:
        cur = await conn.execute(
            "INSERT INTO contacts (facility_id, name, role, resident_id, language, url)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (facility_id, name, role, resident_id, language, url),
        )
        row = await cur.fetchone()
    except psycopg.errors.ForeignKeyViolation as exc:
        raise InvalidInput(f"unknown facility {facility_id!r} or resident {resident_id!r}") from exc
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise AlertsUnavailable(str(exc).strip() or type(exc).__name__) from exc
    assert row is not None  # noqa: S101  (INSERT ... RETURNING)
    return int(row[0])


async def deactivate_contact(
    conn: AsyncConnection[Any], contact_id: int, facility_ids: Collection[str]
) -> bool:
    """Stop notifying a contact of one of ``facility_ids``; False when there is no such contact.
    The row stays, so that past deliveries still name it."""
    try:
        cur = await conn.execute(
            "UPDATE contacts SET active = false WHERE id = %s AND facility_id = ANY(%s) RETURNING id",
            (contact_id, sorted(facility_ids)),
        )
        return await cur.fetchone() is not None
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise AlertsUnavailable(str(exc).strip() or type(exc).__name__) from exc


async def set_policy(
    conn: AsyncConnection[Any], facility_id: str, steps: Sequence[Mapping[str, Any]], alarm_type: str = "*"
) -> None:
    """Create or replace a facility's policy for one alarm type (``'*'``: any type)."""
    parsed = parse_steps([dict(s) for s in steps])
    try:
        await conn.execute(
            "INSERT INTO escalation_policies (facility_id, alarm_type, steps) VALUES (%s, %s, %s)"
            " ON CONFLICT (facility_id, alarm_type) DO UPDATE SET steps = EXCLUDED.steps",
            (facility_id, alarm_type, Jsonb([s.as_json() for s in parsed])),
        )
    except psycopg.errors.ForeignKeyViolation as exc:
        raise InvalidInput(f"unknown facility {facility_id!r}") from exc
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise AlertsUnavailable(str(exc).strip() or type(exc).__name__) from exc


# -- the sweep --------------------------------------------------------------------------------

_CANDIDATES: Final = """
    SELECT a.id, a.type, a.priority, a.subject, a.facility_id, a.room_id, a.resident_id, a.device_id,
           a.state, a.opened_at, a.count, a.escalation_level, a.escalated_at, a.reminders, a.reminded_at,
           coalesce(f.kind, 'institution'), coalesce(f.tz, 'Asia/Shanghai'),
           coalesce(nullif(f.name, ''), a.facility_id, ''), f.supervisor_id,
           coalesce(nullif(rm.name, ''), a.room_id), nullif(r.name, ''),
           coalesce(d.bed_id, (SELECT b.id FROM beds b WHERE b.resident_id = a.resident_id
                               ORDER BY b.id LIMIT 1)),
           coalesce(pt.steps, pa.steps), a.cleared_at, coalesce(a.escalation_from, a.opened_at)
    FROM alarms a
    LEFT JOIN facilities f ON f.id = a.facility_id
    LEFT JOIN rooms rm ON rm.facility_id = a.facility_id AND rm.id = a.room_id
    LEFT JOIN residents r ON r.id = a.resident_id
    LEFT JOIN devices d ON d.id = a.device_id
    LEFT JOIN escalation_policies pt ON pt.facility_id = a.facility_id AND pt.alarm_type = a.type
    LEFT JOIN escalation_policies pa ON pa.facility_id = a.facility_id AND pa.alarm_type = '*'
    WHERE a.state = 'open'
       OR (a.resolution = 'real_incident' AND NOT a.confirm_handled AND a.type = ANY(%s))
    ORDER BY a.id
"""

_RECIPIENTS: Final = """
    SELECT c.id, c.language, c.url, c.role FROM contacts c
    WHERE c.active AND c.role = ANY(%(roles)s) AND (
        (c.role = 'family' AND (c.resident_id = %(resident)s
                                OR (%(home)s AND %(resident)s::text IS NULL
                                    AND c.facility_id = %(facility)s)))
        OR (c.role = 'institution_desk' AND c.facility_id IN (%(facility)s, %(supervisor)s))
        OR (c.role NOT IN ('family', 'institution_desk') AND c.facility_id = %(facility)s))
    ORDER BY c.id
"""

_OUTBOX: Final = """
    INSERT INTO notifications (alarm_id, contact_id, channel, kind, step, language, priority,
                               subject, body, status, last_error, next_attempt_at, created_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""

_AUDIT: Final = """
    INSERT INTO alarm_events (alarm_id, at, action, actor, channel, detail)
    VALUES (%s, %s, %s, 'system', 'escalation', %s)
"""


@dataclass(frozen=True, slots=True)
class _Candidate:
    id: int
    type: str
    priority: str
    subject: str
    facility_id: str | None
    room_id: str | None
    resident_id: str | None
    device_id: str | None
    state: str
    opened_at: datetime
    count: int
    level: int
    escalated_at: datetime | None
    reminders: int
    reminded_at: datetime | None
    facility_kind: str
    tz: str
    facility_name: str
    supervisor_id: str | None
    room_name: str | None
    resident_name: str | None
    bed_id: str | None
    policy: Any
    cleared_at: datetime | None
    escalate_from: datetime  # opened_at, or when a priority raise reopened it (0007)


@dataclass(frozen=True, slots=True)
class Taken:
    """One escalation action the sweep committed."""

    alarm_id: int
    action: str  # escalated, reminded, confirmed
    step: int
    notifications: int


def _channel(url: str) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return scheme[:40] or "unknown"


def _steps(c: _Candidate) -> tuple[Step, ...]:
    if c.policy is not None:
        try:
            return parse_steps(c.policy)
        except InvalidInput:
            # A stored policy that no longer validates must not silence the alarm.
            pass
    return default_steps(c.type, c.priority, c.facility_kind)


def _fields(c: _Candidate, kind: str) -> MessageFields:
    return MessageFields(
        alarm_id=c.id,
        alarm_type=c.type,
        priority=c.priority,
        kind=kind,
        opened_at=c.opened_at,
        tz=c.tz,
        count=c.count,
        facility=c.facility_name,
        room=c.room_name,
        bed=c.bed_id,
        resident=c.resident_name,
        device=c.device_id,
        subject=c.subject,
    )


async def _notify_recipients(
    cur: psycopg.AsyncCursor[Any],
    c: _Candidate,
    roles: Sequence[str],
    kind: str,
    step: int,
    now: datetime,
    templates: Mapping[str, tuple[str, str]],
) -> list[int]:
    await cur.execute(
        _RECIPIENTS,
        {
            "roles": list(roles),
            "resident": c.resident_id,
            "home": c.facility_kind == "home",
            "facility": c.facility_id,
            "supervisor": c.supervisor_id,
        },
    )
    contacts = await cur.fetchall()
    fields = _fields(c, kind)
    for contact_id, language, url, role in contacts:
        try:
            subject, body = render(replace(fields, role=role), language, templates)
            status, error = "pending", None
        except TemplateError as exc:
            # Stored as failed with the reason: the step is still taken and visible.
            subject, body, status, error = "", "", "failed", str(exc)
        await cur.execute(
            _OUTBOX,
            (
                c.id,
                contact_id,
                _channel(url),
                kind,
                step,
                language,
                c.priority,
                subject,
                body,
                status,
                error,
                now,
                now,
            ),
        )
    return [int(r[0]) for r in contacts]


async def _take(
    conn: AsyncConnection[Any],
    c: _Candidate,
    action: str,
    step: int,
    roles: Sequence[str],
    now: datetime,
    templates: Mapping[str, tuple[str, str]],
    detail: dict[str, Any],
) -> Taken | None:
    async with conn.transaction(), conn.cursor() as cur:
        if action == "escalated":
            await cur.execute(
                "UPDATE alarms SET escalation_level = %s, escalated_at = %s, updated_at = now()"
                " WHERE id = %s AND escalation_level = %s AND state = 'open'",
                (step + 1, now, c.id, step),
            )
            kind = "alarm" if step == 0 else "escalation"
        elif action == "reminded":
            await cur.execute(
                "UPDATE alarms SET reminders = %s, reminded_at = %s, updated_at = now()"
                " WHERE id = %s AND reminders = %s AND escalation_level = %s AND state = 'open'",
                (c.reminders + 1, now, c.id, c.reminders, c.level),
            )
            kind = "reminder"
        else:  # confirmed
            await cur.execute(
                "UPDATE alarms SET confirm_handled = true,"
                " escalation_level = greatest(escalation_level, %s), updated_at = now()"
                " WHERE id = %s AND NOT confirm_handled AND escalation_level = %s",
                (step + 1 if roles else c.level, c.id, c.level),
            )
            kind = "escalation"
        if cur.rowcount != 1:
            return None  # acknowledged meanwhile, or another sweep took it
        contacts = await _notify_recipients(cur, c, roles, kind, step, now, templates) if roles else []
        if action != "confirmed" or roles:
            audit = {**detail, "step": step, "roles": list(roles), "contacts": contacts}
            audited = "escalated" if action == "confirmed" else action
            await cur.execute(_AUDIT, (c.id, now, audited, Jsonb(audit)))
            await cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(c.id)))
        if contacts:
            await cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_OUTBOX, str(c.id)))
    return Taken(c.id, action, step, len(contacts))


async def escalate(
    conn: AsyncConnection[Any],
    now: datetime,
    *,
    templates: Mapping[str, tuple[str, str]] = TEMPLATES,
) -> list[Taken]:
    """Take every escalation step and reminder that is due at ``now``; returns what was taken.

    Each step is its own transaction (level compare-and-set, outbox rows, audit). Steps that
    fell due while the service was down are taken in order, one transaction each.
    """
    taken: list[Taken] = []
    try:
        async with conn.cursor() as cur:
            await cur.execute(_CANDIDATES, (list(CONFIRM_FORWARDS),))
            candidates = [_Candidate(*row) for row in await cur.fetchall()]
        for candidate in candidates:
            try:
                taken.extend(await _escalate_one(conn, candidate, now, templates))
            except (psycopg.OperationalError, psycopg.InterfaceError):
                raise
            except Exception:
                # One bad row or policy must not stop the escalation of every other alarm:
                # its transaction rolled back; say so and go on to the next alarm.
                log.exception("escalating alarm %d failed; skipped", candidate.id)
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise AlertsUnavailable(str(exc).strip() or type(exc).__name__) from exc
    return taken


async def _escalate_one(
    conn: AsyncConnection[Any], candidate: _Candidate, now: datetime, templates: Mapping[str, tuple[str, str]]
) -> list[Taken]:
    taken: list[Taken] = []
    c = candidate
    steps = _steps(c)
    if c.state != "open":
        return await _confirm(conn, c, steps, now, templates)
    level = c.level
    # While the condition is cleared (a device back online; cleared_at is reset by a repeat),
    # the first step is still taken, so that somebody hears of it, but nobody further up the
    # chain is called and nobody is reminded. A repeat resumes the escalation.
    cleared = c.cleared_at is not None
    while (
        level < len(steps)
        and (level == 0 or not cleared)
        and c.escalate_from + timedelta(seconds=steps[level].after_s) <= now
    ):
        current = replace(c, level=level)
        done = await _take(
            conn, current, "escalated", level, steps[level].roles, now, templates,
            {"after_s": steps[level].after_s},
        )  # fmt: skip
        if done is None:
            break
        taken.append(done)
        level += 1
        c = replace(c, level=level, escalated_at=now)
    last = steps[-1]
    if level >= len(steps) and last.remind_every_s is not None and not cleared:
        since = c.reminded_at or c.escalated_at
        if since is not None and since + timedelta(seconds=last.remind_every_s) <= now:
            done = await _take(
                conn, c, "reminded", c.reminders + 1, last.roles, now, templates,
                {"reminder": c.reminders + 1, "remind_every_s": last.remind_every_s},
            )  # fmt: skip
            if done is not None:
                taken.append(done)
    return taken


async def _confirm(
    conn: AsyncConnection[Any],
    c: _Candidate,
    steps: Sequence[Step],
    now: datetime,
    templates: Mapping[str, tuple[str, str]],
) -> list[Taken]:
    """A confirmed fire or gas: take the regulator's step now if it has not been taken."""
    index = next((i for i, s in enumerate(steps) if "regulator_desk" in s.roles and i >= c.level), None)
    if index is None:
        await _take(conn, c, "confirmed", c.level, (), now, templates, {})
        return []
    done = await _take(conn, c, "confirmed", index, ("regulator_desk",), now, templates, {"confirmed": True})
    return [] if done is None else [done]
