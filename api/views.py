"""How alarms look to people: the alarm rows of ``alerts.queries`` as JSON, and what of them
each role may read. Routes and the live feed share it."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from alerts.queries import AlarmView
from api.auth import Principal


def _iso(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def serialize(view: AlarmView) -> dict[str, Any]:
    """An alarm as the API sends it: every column, timestamps in ISO 8601."""
    return {f.name: _iso(getattr(view, f.name)) for f in dataclasses.fields(view)}


def reads_redacted(principal: Principal) -> bool:
    """Whether :func:`for_caller` leaves things out for this caller."""
    return principal.role == "regulator"


def for_caller(view: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """What a caller's role may read of an alarm. Regulators get the record without who it
    was about: no resident, bed or detection details (which can carry vital signs); the
    subject is kept only when it is a device. Nor do they learn which nurse acknowledged or
    resolved it: when, and the verdict, are the record."""
    if reads_redacted(principal):
        about_device = view.get("resident_id") is None
        return {
            **view,
            "evidence": {},
            "resident_id": None,
            "resident_name": None,
            "bed_id": None,
            "subject": view.get("subject") if about_device else None,
            "acknowledged_by": None,
            "resolved_by": None,
        }
    return view
