"""Who is told about alarms and when: contacts and escalation policies per facility.

Contacts hold apprise URLs (``mailto://``, ``json://``, ``ntfy://``, WeCom/DingTalk/Feishu
bots), which can carry credentials: only staff and admins of the facility read them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

import alerts
from alerts import InvalidInput, queries
from alerts.escalation import default_steps
from api.deps import Actor, Conn, not_found
from devices.queries import facility_kind, resident_facility

router = APIRouter(tags=["escalation"])

ContactRole = Literal["care_worker", "supervisor", "family", "manager", "regulator_desk", "institution_desk"]
FacilityId = Annotated[str, Path(min_length=1, max_length=64)]
AlarmType = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^([a-z_]+|\*)$")]


class ContactIn(BaseModel):
    facility_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    role: ContactRole
    url: str = Field(min_length=4, max_length=2000, description="an apprise URL, e.g. mailto://… or json://…")
    language: Literal["zh", "en"] = "zh"
    resident_id: str | None = Field(default=None, max_length=64)


class Contact(ContactIn):
    id: int
    active: bool


class StepIn(BaseModel):
    after_s: float = Field(ge=0, le=7 * 86400)
    roles: list[ContactRole] = Field(min_length=1, max_length=6)
    remind_every_s: float | None = Field(default=None, ge=1, le=7 * 86400)


class Policy(BaseModel):
    facility_id: str
    alarm_type: str
    steps: list[StepIn]
    builtin: bool = False


def _check_facility(caller: Actor, facility_id: str) -> None:
    if not caller.sees_facility(facility_id):
        raise not_found("facility", facility_id)


@router.get("/contacts")
async def list_contacts(
    conn: Conn, caller: Actor, facility: Annotated[str | None, Query(max_length=64)] = None
) -> list[Contact]:
    found = await queries.contacts(conn, caller.facilities, facility_id=facility)
    return [Contact.model_validate(c, from_attributes=True) for c in found]


@router.post(
    "/contacts", status_code=status.HTTP_201_CREATED, responses={404: {"description": "Unknown facility"}}
)
async def add_contact(body: ContactIn, conn: Conn, caller: Actor) -> Contact:
    _check_facility(caller, body.facility_id)
    if body.resident_id is not None and not caller.sees_facility(
        await resident_facility(conn, body.resident_id)
    ):
        raise not_found("resident", body.resident_id)
    try:
        contact_id = await alerts.add_contact(
            conn,
            body.facility_id,
            body.name,
            body.role,
            body.url,
            language=body.language,
            resident_id=body.resident_id,
        )
    except InvalidInput as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return Contact(**body.model_dump(), id=contact_id, active=True)


@router.delete(
    "/contacts/{contact_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "Unknown"}},
)
async def deactivate_contact(
    contact_id: Annotated[int, Path(ge=1, le=2**63 - 1)], conn: Conn, caller: Actor
) -> None:
    """Stop notifying a contact. The row stays, so past deliveries still name it."""
    if not await alerts.deactivate_contact(conn, contact_id, caller.facilities):
        raise not_found("contact", contact_id)


@router.get("/facilities/{facility_id}/policies", responses={404: {"description": "Unknown facility"}})
async def list_policies(facility_id: FacilityId, conn: Conn, caller: Actor) -> list[Policy]:
    """The facility's policies; without any, the built-in chain for a high-priority alarm."""
    _check_facility(caller, facility_id)
    kind = await facility_kind(conn, facility_id)
    if kind is None:
        raise not_found("facility", facility_id)
    policies = [
        Policy(facility_id=facility_id, alarm_type=row.alarm_type, steps=[StepIn(**s) for s in row.steps])
        for row in await queries.policies(conn, facility_id)
    ]
    if not any(p.alarm_type == "*" for p in policies):
        builtin = [StepIn(**s.as_json()) for s in default_steps("*", "high", kind)]
        policies.append(Policy(facility_id=facility_id, alarm_type="*", steps=builtin, builtin=True))
    return policies


@router.put(
    "/facilities/{facility_id}/policies/{alarm_type}", responses={404: {"description": "Unknown facility"}}
)
async def set_policy(
    facility_id: FacilityId, alarm_type: AlarmType, steps: list[StepIn], conn: Conn, caller: Actor
) -> Policy:
    """Create or replace the policy of one alarm type (``*``: every type without its own)."""
    _check_facility(caller, facility_id)
    if alarm_type != "*" and alarm_type not in alerts.RULES:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown alarm type {alarm_type!r}")
    raw: list[dict[str, Any]] = [s.model_dump(exclude_none=True) for s in steps]
    try:
        await alerts.set_policy(conn, facility_id, raw, alarm_type)
    except InvalidInput as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return Policy(facility_id=facility_id, alarm_type=alarm_type, steps=steps)
