"""What happens after a detection: the alarm lifecycle (escalation and notification to come).

Detections recorded by the hub become alarms that people acknowledge and resolve, one live
alarm per (subject, type) episode, with an append-only audit of every transition. See
docs/alerts.md.
"""

from alerts.errors import AlarmNotFound, AlertsError, AlertsUnavailable, InvalidInput, TransitionRefused
from alerts.lifecycle import (
    NOTE_MAX,
    RESOLUTIONS,
    Alarm,
    Applied,
    acknowledge,
    apply_pending,
    get_alarm,
    list_alarms,
    resolve,
    sweep,
)
from alerts.rules import RULES, AlarmRule, route
from alerts.service import AlertService

__all__ = [
    "NOTE_MAX",
    "RESOLUTIONS",
    "RULES",
    "Alarm",
    "AlarmNotFound",
    "AlarmRule",
    "AlertService",
    "AlertsError",
    "AlertsUnavailable",
    "Applied",
    "InvalidInput",
    "TransitionRefused",
    "acknowledge",
    "apply_pending",
    "get_alarm",
    "list_alarms",
    "resolve",
    "route",
    "sweep",
]
