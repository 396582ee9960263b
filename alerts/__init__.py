"""What happens after a detection: the alarm lifecycle, escalation and notification.

Detections recorded by the hub become alarms that people acknowledge and resolve, one live
alarm per (subject, type) episode, with an append-only audit of every transition. Open
alarms escalate along per-facility policies; each step writes an outbox that the delivery
worker sends through apprise, rate-limited per recipient. See docs/alerts.md.
"""

from alerts import queries, reports
from alerts.delivery import (
    Delivered,
    DeliveryPolicy,
    RecipientStatus,
    apprise_send,
    deliver_due,
    delivery_status,
)
from alerts.errors import (
    AlarmNotFound,
    AlertsError,
    AlertsUnavailable,
    DeliveryFailed,
    InvalidInput,
    TemplateError,
    TransitionRefused,
)
from alerts.escalation import (
    ROLES,
    Step,
    Taken,
    add_contact,
    deactivate_contact,
    default_steps,
    escalate,
    parse_steps,
    set_policy,
)
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
from alerts.publish import AlarmPublisher, publish_changes, topic_for
from alerts.rules import RULES, AlarmRule, route
from alerts.service import AlertService
from alerts.templates import MessageFields, render

__all__ = [
    "NOTE_MAX",
    "RESOLUTIONS",
    "ROLES",
    "RULES",
    "Alarm",
    "AlarmNotFound",
    "AlarmPublisher",
    "AlarmRule",
    "AlertService",
    "AlertsError",
    "AlertsUnavailable",
    "Applied",
    "Delivered",
    "DeliveryFailed",
    "DeliveryPolicy",
    "InvalidInput",
    "MessageFields",
    "RecipientStatus",
    "Step",
    "Taken",
    "TemplateError",
    "TransitionRefused",
    "acknowledge",
    "add_contact",
    "apply_pending",
    "apprise_send",
    "deactivate_contact",
    "default_steps",
    "deliver_due",
    "delivery_status",
    "escalate",
    "get_alarm",
    "list_alarms",
    "parse_steps",
    "publish_changes",
    "queries",
    "render",
    "reports",
    "resolve",
    "route",
    "set_policy",
    "sweep",
    "topic_for",
]
