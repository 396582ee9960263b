"""The regulator's figures (alerts/reports.py) per district and facility, for the dashboard
and for anyone who would rather chart them elsewhere. No resident data is in them."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from alerts import reports
from api.deps import Conn, Operator, not_found

router = APIRouter(prefix="/reports", tags=["reports"])

Days = Annotated[int, Query(ge=1, le=366, description="the window, in local days up to today")]


def plain(value: Any) -> Any:
    """A figure as JSON: dataclass fields plus its derived properties (ratio, rate, share...)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name in dir(type(value)):
            if isinstance(getattr(type(value), name, None), property):
                out[name] = plain(getattr(value, name))
        return out
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


@router.get("/districts")
async def districts(conn: Conn, caller: Operator, days: Days = 30) -> list[dict[str, Any]]:
    """Every district in the caller's scope: its totals and each facility's figures."""
    found = await reports.district_summaries(conn, sorted(caller.facilities), days=days)
    return [plain(d) for d in found]


@router.get("/facilities/{facility_id}", responses={404: {"description": "Unknown, or not the caller's"}})
async def facility(
    facility_id: Annotated[str, Path(min_length=1, max_length=64)],
    conn: Conn,
    caller: Operator,
    days: Days = 30,
) -> dict[str, Any]:
    if not caller.sees_facility(facility_id):
        raise not_found("facility", facility_id)
    summary = await reports.facility_summary(conn, sorted(caller.facilities), facility_id, days=days)
    if summary is None:
        raise not_found("facility", facility_id)
    return dict(plain(summary))
