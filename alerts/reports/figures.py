"""The regulator's figures as results: one frozen row type per figure, the limits they are
held against (GB 50440, JGJ/T 484-2019, IEC 60601-1-8), and the summaries that gather them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Final, Generic, TypeVar

DEFAULT_DAYS: Final = 30
MAX_DAYS: Final = 366
# Alarm types that mean a device cannot do its job: a fault (or a stuck sensor) and a device
# that stopped reporting. Both need a substitute or manual cover within 2 h (JGJ/T 484-2019).
# ``tamper`` (an opened cover, usually maintenance) and ``low_battery`` (a warning before a
# failure, GB 20517) are low priority, "be aware" (IEC 60601-1-8), and are not counted.
FAULT_TYPES: Final = ("fault", "device_offline")
FAULT_LIMIT_S: Final = 2 * 3600  # JGJ/T 484-2019: a fault not fixed within 2 h needs cover
FALSE_ALARMS_PER_DAY_LIMIT: Final = 5  # GB 50440: more than 5 false alarms a day at a site
NURSING_GOAL: Final = 0.8  # nursing-type beds at 80 % or more of institution beds by 2027
PRIORITIES: Final = ("high", "medium", "low")  # IEC 60601-1-8
FIRE_GAS_TYPES: Final = ("fire", "fire_prealarm", "gas")

R = TypeVar("R")


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Facility:
    id: str
    name: str
    kind: str  # 'institution', or 'home' for a family care bed
    district: str
    tz: str


@dataclass(frozen=True, slots=True)
class Figures(Generic[R]):
    """One figure for each facility in scope and for each district they belong to.

    ``facilities`` is sorted by (district, facility id), ``districts`` by district; a
    district row has ``facility_id = None``."""

    facilities: tuple[R, ...]
    districts: tuple[R, ...]


@dataclass(frozen=True, slots=True)
class CoverageRow:
    """Rooms with at least one working smoke detector (view ``room_fire_coverage``)."""

    district: str
    facility_id: str | None
    rooms: int
    covered: int
    uncovered: tuple[tuple[str, str], ...]  # (facility id, room id), sorted

    @property
    def ratio(self) -> float | None:
        """covered / rooms; None when no room is registered."""
        return self.covered / self.rooms if self.rooms else None


@dataclass(frozen=True, slots=True)
class OnlineRow:
    """Registered devices and how many of them the hub sees online now."""

    district: str
    facility_id: str | None
    registered: int
    online: int
    never_seen: int  # registered but without any health row: never reported

    @property
    def rate(self) -> float | None:
        """online / registered; None when no device is registered."""
        return self.online / self.registered if self.registered else None


@dataclass(frozen=True, slots=True)
class OpenFault:
    """An unresolved ``fault`` or ``device_offline`` alarm whose condition has not cleared."""

    alarm_id: int
    district: str
    facility_id: str
    type: str
    device_id: str | None
    room_id: str | None
    state: str  # 'open' or 'acknowledged'
    opened_at: datetime
    age_s: float  # now - opened_at

    @property
    def over_limit(self) -> bool:
        """Open longer than JGJ/T 484's 2 h."""
        return self.age_s > FAULT_LIMIT_S


@dataclass(frozen=True, slots=True)
class FaultRow:
    district: str
    facility_id: str | None
    open: int
    over_limit: int  # open longer than 2 h
    faults: tuple[OpenFault, ...]  # oldest first within a facility; by facility, then age


@dataclass(frozen=True, slots=True)
class FalseAlarmDay:
    """A local day on which a site had more than 5 false fire alarms (GB 50440)."""

    facility_id: str
    day: date
    false_alarms: int


@dataclass(frozen=True, slots=True)
class FireRow:
    """``fire`` alarms opened in the window, by how they ended."""

    district: str
    facility_id: str | None
    first_day: date
    last_day: date
    total: int
    false_alarm: int
    real_incident: int
    test: int
    cleared: int  # resolved by the system when a new episode began; no human verdict
    open: int  # not resolved yet
    review_days: tuple[FalseAlarmDay, ...]  # sorted by (facility, day)

    @property
    def false_alarm_rate(self) -> float | None:
        """false_alarm / (false_alarm + real_incident); None when there is no verdict."""
        judged = self.false_alarm + self.real_incident
        return self.false_alarm / judged if judged else None


@dataclass(frozen=True, slots=True)
class AckRow:
    """Time to acknowledge alarms of one priority opened in the window, in seconds."""

    district: str
    facility_id: str | None
    priority: str
    acknowledged: int  # alarms with a time to acknowledge: the population of p50 and p90
    unacknowledged: int  # still open: nobody has acknowledged them yet
    p50_s: float | None
    p90_s: float | None


@dataclass(frozen=True, slots=True)
class AlarmTests:
    """Simulated-alarm tests in one local month (GB 50440: 2 or more a month)."""

    district: str
    facility_id: str | None
    month: date  # its first day
    facilities: int
    compliant: int  # facilities with at least 2 tests in the month
    detectors: int
    detectors_tested: int
    tests: int

    @property
    def all_compliant(self) -> bool:
        return self.compliant == self.facilities


@dataclass(frozen=True, slots=True)
class NursingRow:
    """Nursing-type beds among an institution's beds (home care beds are not counted)."""

    district: str
    facility_id: str | None
    beds: int
    nursing: int

    @property
    def share(self) -> float | None:
        return self.nursing / self.beds if self.beds else None

    @property
    def meets_goal(self) -> bool:
        share = self.share
        return share is not None and share >= NURSING_GOAL


@dataclass(frozen=True, slots=True)
class DayRow:
    """Alarms opened on one local day, by type group, and how many were false alarms."""

    district: str
    facility_id: str | None
    day: date
    fire_gas: int  # fire, fire_prealarm, gas
    fall: int
    other: int
    false_alarms: int  # of any type

    @property
    def total(self) -> int:
        return self.fire_gas + self.fall + self.other


@dataclass(frozen=True, slots=True)
class Summary:
    """Every figure of one facility, or of a district's facilities in scope."""

    district: str
    facility_id: str | None
    facilities: tuple[Facility, ...]
    first_day: date  # the window's first local day (the earliest, for a district)
    last_day: date  # today, locally (the latest, for a district)
    coverage: CoverageRow
    online: OnlineRow
    faults: FaultRow
    fire: FireRow
    ack: tuple[AckRow, ...]  # high, medium, low
    tests_this_month: AlarmTests
    tests_last_month: AlarmTests
    nursing: NursingRow | None  # None without an institution (home care beds only)
    daily: tuple[DayRow, ...]  # one per local day of the window, oldest first


@dataclass(frozen=True, slots=True)
class DistrictSummary:
    district: str
    total: Summary
    facilities: tuple[Summary, ...]  # sorted by facility id
