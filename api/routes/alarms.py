"""Alarms: the list, one alarm with its audit trail, deliveries and evidence, acknowledge
and resolve, and the live stream of changes (SSE)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.responses import StreamingResponse
from fastapi.sse import KEEPALIVE_COMMENT, format_sse_event
from pydantic import BaseModel, Field

import alerts
import hub.queries
from alerts import AlarmNotFound, InvalidInput, TransitionRefused, queries
from alerts.queries import AlarmView
from api.auth import Principal
from api.deps import Actor, Caller, Conn, RawReader, feed, not_found, session_holder, session_token
from api.stream import CLOSING, ENDED, LOST, RECHECK_BEFORE_SEND_S, RECHECK_S, RESYNC, Change
from api.views import for_caller, serialize
from hub.storage import StorageUnavailable

log = logging.getLogger(__name__)

router = APIRouter(prefix="/alarms", tags=["alarms"])

AlarmId = Annotated[int, Path(ge=1, le=2**63 - 1)]
State = Literal["open", "acknowledged", "resolved", "unresolved"]
Priority = Literal["high", "medium", "low"]
# Readings shown around a fire: a few minutes before the first detection, up to the last.
_FIRE_BEFORE: Final = timedelta(minutes=10)
_MAX_WINDOW: Final = timedelta(hours=2)
_FIRE_METRICS: Final = ("temp_c", "smoke_density_pct_m", "smoke", "co_ppm", "gas_lel_pct")
_MAX_TRACE: Final = 3000
# Browsers and proxies drop a quiet connection: a comment goes out after this long without
# an event (what FastAPI's own SSE responses send).
_KEEPALIVE_S: Final = 15.0
# What the stream's events look like, for the OpenAPI description.
_SSE_ITEM: Final = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["ready", "alarm", "resync", "degraded"]},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
# How long past the feed's due look at its session (api/stream.py) a stream waits before it
# looks itself.
_FEED_GRACE_S: Final = 1.5
# While the database is away, the first pause before the session is looked at again; it
# doubles up to RECHECK_S.
_AWAY_RETRY_FIRST_S: Final = 1.0


class EventStream(StreamingResponse):
    """Server-sent events, written by the route itself (not FastAPI's ``EventSourceResponse``,
    which would take the route for a generator of events)."""

    media_type = "text/event-stream"


class Ack(BaseModel):
    note: str | None = Field(default=None, max_length=alerts.NOTE_MAX)


class Resolve(BaseModel):
    resolution: Literal["false_alarm", "real_incident", "test"]
    note: str | None = Field(default=None, max_length=alerts.NOTE_MAX)


class AuditEntry(BaseModel):
    at: datetime
    action: str
    actor: str
    channel: str
    note: str | None
    detail: dict[str, Any]


class Delivery(BaseModel):
    contact: str
    role: str
    channel: str
    kind: str
    step: int | None
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class Series(BaseModel):
    device_id: str
    metric: str
    ts: list[datetime]
    values: list[float]


class Evidence(BaseModel):
    alarm_id: int
    kind: str
    window_start: datetime
    window_end: datetime
    series: list[Series]


async def _scoped(conn: Conn, caller: Caller, alarm_id: int) -> AlarmView:
    found = await queries.scoped_alarm(conn, caller, alarm_id)
    if found is None:
        raise not_found("alarm", alarm_id)
    return found


@router.get("")
async def list_alarms(
    conn: Conn,
    caller: Caller,
    state: State = "unresolved",
    type: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_]+$")] = None,
    priority: Priority | None = None,
    facility: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """Alarms in the caller's scope, the most urgent first (priority, then newest)."""
    wanted = queries.AlarmFilter(
        state=state, type=type, priority=priority, facility_id=facility, since=since, until=until, limit=limit
    )
    return [for_caller(serialize(a), caller) for a in await queries.scoped_alarms(conn, caller, wanted)]


@router.get(
    "/stream",
    response_class=EventStream,
    responses={200: {"content": {"text/event-stream": {"itemSchema": _SSE_ITEM}}}},
)
async def stream(request: Request, caller: Caller) -> EventStream:
    """Server-sent events: ``alarm`` with the changed alarm (as in the list) whenever one in
    the caller's scope opens, repeats, escalates, is acknowledged or resolved; ``resync``
    when changes may have been missed, after which a client reloads its list.

    The session is checked again every few seconds (by the feed, for every stream in one
    query), and before an alarm or a resync goes out if the last check is older than a
    second: a logout, an expiry, a disabled account or a new password ends the stream, and a
    changed scope applies to it.

    If the database cannot be reached for that check, the stream stays open and sends
    ``degraded`` once (``{"database": false, "since": ...}``); it then sends nothing else, no
    alarm above all, until a check succeeds again, tried with a growing pause (keep-alive
    comments, every 15 s, hold the connection meanwhile). On success it sends ``resync``
    (``{"database": true, ...}``); a session that ended meanwhile ends the stream instead."""
    # The events are written here rather than yielded to FastAPI's SSE layer, which runs
    # two more tasks and a timeout per stream and encodes every event for each stream: with
    # a thousand streams open, that was most of the cost of handing out an alarm.
    return EventStream(
        _events(request, caller), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


def _event(name: str, data: object = None, *, raw: str | None = None, **fields: Any) -> bytes:
    return format_sse_event(data_str=raw if raw is not None else json.dumps(data), event=name, **fields)


async def _events(request: Request, caller: Principal) -> AsyncIterator[bytes]:
    alarm_feed = feed(request)
    token = session_token(request) or ""
    async with alarm_feed.subscribe(caller, token) as sub:
        yield _event("ready", {"listening": alarm_feed.listening.is_set()}, retry=2000)
        sent = time.monotonic()
        away_since: datetime | None = None  # set while the database cannot be asked
        retry_at = 0.0  # while away: when the session is looked at again
        pause = _AWAY_RETRY_FIRST_S
        while True:
            # The feed looks at every stream's session; a stream looks itself only when the
            # feed has not for a while (the database may be away), or while degraded.
            due = retry_at if away_since is not None else sub.checked + RECHECK_S + _FEED_GRACE_S
            item = sub.poll()
            if item is None:
                try:
                    async with asyncio.timeout(max(0.0, min(due, sent + _KEEPALIVE_S) - time.monotonic())):
                        item = await sub.next()
                except TimeoutError:
                    item = None
            if item in (CLOSING, ENDED):
                return
            now = time.monotonic()
            if item is None and now - sent >= _KEEPALIVE_S:
                yield KEEPALIVE_COMMENT
                sent = now
            if away_since is not None:
                look = now >= retry_at or (item is not None and item != LOST)
            elif item is None:
                look = now >= due
            else:  # anything to hand out (or the feed's ``lost``) wants a look no older than a second
                look = now - sub.checked >= RECHECK_BEFORE_SEND_S
            if look:
                if await request.is_disconnected():
                    return
                try:
                    current = await session_holder(request, token)
                except StorageUnavailable as exc:
                    if away_since is None:
                        away_since = datetime.now(UTC)
                        log.warning("a live stream cannot check its session (%s); degraded until it can", exc)
                        yield _event("degraded", {"database": False, "since": away_since.isoformat()})
                        sent = time.monotonic()
                    retry_at = time.monotonic() + pause
                    pause = min(pause * 2, RECHECK_S)
                    continue  # nothing goes out on a session that could not be looked at
                if current is None:
                    return
                sub.refreshed(current)
                pause = _AWAY_RETRY_FIRST_S
                if away_since is not None:
                    # Whatever changed meanwhile was not sent: the client reloads its list.
                    log.info("a live stream reached the database again; resync")
                    away_since = None
                    yield _event("resync", {"database": True, "listening": alarm_feed.listening.is_set()})
                    sent = time.monotonic()
                    if item == RESYNC:
                        continue
            if item is None or item == LOST or away_since is not None:
                continue
            if item == RESYNC:
                yield _event("resync", {})
            elif isinstance(item, Change):
                if not sub.principal.sees_alarm(item.facility_id, item.resident_id):
                    continue  # queued before the caller's scope shrank
                yield _event("alarm", raw=item.data, id=f"{item.alarm_id}:{item.updated_at}")
            sent = time.monotonic()


@router.get("/{alarm_id}", responses={404: {"description": "Unknown, or not the caller's"}})
async def get_alarm(alarm_id: AlarmId, conn: Conn, caller: Caller) -> dict[str, Any]:
    return for_caller(serialize(await _scoped(conn, caller, alarm_id)), caller)


async def _transition(
    conn: Conn, caller: Actor, alarm_id: int, action: Callable[[], Awaitable[object]]
) -> dict[str, Any]:
    await _scoped(conn, caller, alarm_id)
    try:
        await action()
    except AlarmNotFound:
        raise not_found("alarm", alarm_id) from None
    except TransitionRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except InvalidInput as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return serialize(await _scoped(conn, caller, alarm_id))


@router.post(
    "/{alarm_id}/ack",
    responses={
        404: {"description": "Unknown, or not the caller's"},
        409: {"description": "Already acknowledged"},
    },
)
async def acknowledge(
    alarm_id: AlarmId, conn: Conn, caller: Actor, body: Ack | None = None
) -> dict[str, Any]:
    """open → acknowledged, by the caller."""
    note = body.note if body else None
    return await _transition(
        conn, caller, alarm_id, lambda: alerts.acknowledge(conn, alarm_id, caller.username, "api", note)
    )


@router.post(
    "/{alarm_id}/resolve",
    responses={
        404: {"description": "Unknown, or not the caller's"},
        409: {"description": "Already resolved"},
    },
)
async def resolve(alarm_id: AlarmId, body: Resolve, conn: Conn, caller: Actor) -> dict[str, Any]:
    """→ resolved with a conclusion (false alarm, real incident, test) and a note."""
    return await _transition(
        conn,
        caller,
        alarm_id,
        lambda: alerts.resolve(conn, alarm_id, caller.username, "api", body.resolution, body.note),
    )


@router.get("/{alarm_id}/events", responses={404: {"description": "Unknown, or not the caller's"}})
async def audit(alarm_id: AlarmId, conn: Conn, caller: Caller) -> list[AuditEntry]:
    """The alarm's audit trail, oldest first. Regulators read what happened, when and through
    which channel, but not who did it, what they wrote or what the system noted (a note can
    name the resident and their vital signs; an escalation's detail names its contacts)."""
    await _scoped(conn, caller, alarm_id)
    events = await queries.alarm_events(conn, alarm_id)
    if caller.role == "regulator":
        return [
            AuditEntry(at=e.at, action=e.action, actor="", channel=e.channel, note=None, detail={})
            for e in events
        ]
    return [AuditEntry.model_validate(e, from_attributes=True) for e in events]


@router.get("/{alarm_id}/deliveries", responses={404: {"description": "Unknown, or not the caller's"}})
async def deliveries(alarm_id: AlarmId, conn: Conn, caller: Caller) -> list[Delivery]:
    """Every notification about the alarm and how it fared. Families see only their own."""
    await _scoped(conn, caller, alarm_id)
    rows = await alerts.delivery_status(conn, alarm_id)
    if caller.role == "family":
        rows = [r for r in rows if r.role == "family"]
    # Only those who act see whom a message went to and how a channel failed (an error can
    # echo a webhook's address, and with it its key).
    private = not caller.acts
    return [
        Delivery(
            contact="" if private else r.contact,
            role=r.role,
            channel=r.channel,
            kind=r.kind,
            step=r.step,
            status=r.status,
            attempts=r.attempts,
            last_error=None if private else r.last_error,
            created_at=r.created_at,
            sent_at=r.sent_at,
        )
        for r in rows
    ]


def _window(alarm: AlarmView) -> tuple[datetime, datetime]:
    window = (alarm.evidence or {}).get("window")
    if isinstance(window, list) and len(window) == 2:
        try:
            start, end = datetime.fromisoformat(window[0]), datetime.fromisoformat(window[1])
            return start, min(end, start + _MAX_WINDOW)
        except (TypeError, ValueError):
            pass
    opened = alarm.opened_at
    # an alarm that repeated for days shows its first hours, not days of readings
    end = min(max(opened, alarm.last_seen_at), opened + _MAX_WINDOW)
    return opened - timedelta(seconds=30), end + timedelta(seconds=30)


@router.get(
    "/{alarm_id}/evidence",
    responses={404: {"description": "Unknown, or not the caller's"}, 403: {"description": "Regulators"}},
)
async def evidence(alarm_id: AlarmId, conn: Conn, caller: RawReader) -> Evidence:
    """The raw data behind an alarm: the acceleration magnitude around a fall, or the
    temperature, smoke, CO and gas curves of the room's detectors around a fire."""
    alarm = await _scoped(conn, caller, alarm_id)
    start, end = _window(alarm)
    series: list[Series] = []
    if alarm.device_kind == "wearable" and alarm.device_id:
        ts: list[datetime] = []
        mags: list[float] = []
        for w in await hub.queries.waveforms(conn, alarm.device_id, start - timedelta(seconds=5), end):
            xyz = np.frombuffer(w.acc, "<f4").reshape(int(w.n), 3)
            mag = np.sqrt((xyz.astype(np.float64) ** 2).sum(axis=1))
            ts.extend(w.ts + timedelta(seconds=i / float(w.rate_hz)) for i in range(int(w.n)))
            mags.extend(float(m) for m in mag)
        step = max(1, len(mags) // _MAX_TRACE)
        series.append(
            Series(device_id=alarm.device_id, metric="acc_magnitude_g", ts=ts[::step], values=mags[::step])
        )
        kind = "acceleration"
    else:
        start = start - _FIRE_BEFORE
        found = await hub.queries.room_series(
            conn, alarm.facility_id, alarm.room_id, alarm.device_id, start, end, _FIRE_METRICS
        )
        for one in found:
            step = max(1, len(one.values) // _MAX_TRACE)
            ts, values = one.ts[::step], one.values[::step]
            series.append(Series(device_id=one.device_id, metric=one.metric, ts=ts, values=values))
        kind = "readings"
    return Evidence(alarm_id=alarm_id, kind=kind, window_start=start, window_end=end, series=series)
