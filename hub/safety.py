"""Fire-safety figures for supervision: smoke-detector coverage and monthly tests.

- Coverage (智慧消防全覆盖): a room counts as covered when at least one smoke detector in it
  is online and has no open fault, tamper or stuck sensor (view ``room_fire_coverage``,
  fed by the device health the detectors keep).
- Test alarms: GB 50440 asks for two or more simulated-alarm transmission tests a month.
  A month here is the facility's local calendar month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg import AsyncConnection

MONTHLY_TESTS_REQUIRED = 2  # GB 50440


@dataclass(frozen=True, slots=True)
class Coverage:
    facility_id: str
    rooms: int
    covered: int
    uncovered_rooms: tuple[str, ...]

    @property
    def ratio(self) -> float:
        return self.covered / self.rooms if self.rooms else 1.0


@dataclass(frozen=True, slots=True)
class AlarmTestCompliance:
    facility_id: str
    month: date
    detectors: int
    detectors_tested: int
    tests: int

    @property
    def compliant(self) -> bool:
        return self.tests >= MONTHLY_TESTS_REQUIRED


async def fire_coverage(conn: AsyncConnection[Any], facility_ids: list[str] | None = None) -> list[Coverage]:
    cur = await conn.execute(
        """
        SELECT facility_id, count(*), count(*) FILTER (WHERE covered),
               coalesce(array_agg(room_id ORDER BY room_id) FILTER (WHERE NOT covered), '{}')
        FROM room_fire_coverage
        WHERE %(ids)s::text[] IS NULL OR facility_id = ANY(%(ids)s::text[])
        GROUP BY facility_id ORDER BY facility_id
        """,
        {"ids": facility_ids},
    )
    return [Coverage(r[0], int(r[1]), int(r[2]), tuple(r[3])) for r in await cur.fetchall()]


async def alarm_test_compliance(
    conn: AsyncConnection[Any], month: date, facility_ids: list[str] | None = None
) -> list[AlarmTestCompliance]:
    """Test events from smoke detectors in ``month`` (its first day), per facility."""
    first = month.replace(day=1)
    cur = await conn.execute(
        """
        SELECT f.id, count(DISTINCT d.id), count(DISTINCT e.device_id), count(e.device_id)
        FROM facilities f
        LEFT JOIN devices d ON d.facility_id = f.id AND d.kind = 'smoke_detector'
        LEFT JOIN events e ON e.device_id = d.id AND e.event = 'test'
            AND e.ts >= %(first)s::timestamp AT TIME ZONE f.tz
            AND e.ts < (%(first)s::timestamp + interval '1 month') AT TIME ZONE f.tz
        WHERE %(ids)s::text[] IS NULL OR f.id = ANY(%(ids)s::text[])
        GROUP BY f.id ORDER BY f.id
        """,
        {"first": first, "ids": facility_ids},
    )
    return [AlarmTestCompliance(r[0], first, int(r[1]), int(r[2]), int(r[3])) for r in await cur.fetchall()]
