"""Message text, in Chinese and English, for a person woken at 3 a.m.

Every message answers, in this order: what happened (the alarm type in words), who (the
resident, or the device when no resident is known), where (facility, room, bed), when (local
time in the facility's own time zone) and how to acknowledge it.

A template is a ``str.format`` string over a flat set of fields (``MessageFields``). A
template that names a field the message does not have raises ``TemplateError`` with the
field's name, and the notification is stored as failed with that reason rather than sent
half-filled or lost.

Family messages are built from the one alarm about their own resident: the fields never
carry another resident's name or room (the escalation step only picks family contacts of
the alarm's resident).
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alerts.errors import TemplateError

LANGUAGES: Final = ("zh", "en")

TYPE_WORDS: Final[Mapping[str, Mapping[str, str]]] = {
    "zh": {
        "fall": "跌倒",
        "fire": "火灾报警",
        "fire_prealarm": "火灾预警",
        "gas": "燃气泄漏",
        "sos": "紧急呼叫(SOS)",
        "bed_exit": "离床未归",
        "vitals": "生命体征异常",
        "inactivity": "长时间无活动",
        "device_offline": "设备离线",
        "water_leak": "漏水",
        "fault": "设备故障",
        "low_battery": "电量低",
        "tamper": "设备被拆动",
        "ingest_delayed": "数据延迟",
    },
    "en": {
        "fall": "Fall",
        "fire": "Fire alarm",
        "fire_prealarm": "Fire pre-alarm",
        "gas": "Gas leak",
        "sos": "SOS call",
        "bed_exit": "Out of bed, not back",
        "vitals": "Vital signs out of range",
        "inactivity": "No activity for a long time",
        "device_offline": "Device offline",
        "water_leak": "Water leak",
        "fault": "Device fault",
        "low_battery": "Low battery",
        "tamper": "Device tampered with",
        "ingest_delayed": "Device data delayed",
    },
}

PRIORITY_WORDS: Final[Mapping[str, Mapping[str, str]]] = {
    "zh": {"high": "紧急", "medium": "注意", "low": "提示"},
    "en": {"high": "URGENT", "medium": "Attention", "low": "Notice"},
}

KIND_WORDS: Final[Mapping[str, Mapping[str, str]]] = {
    "zh": {"alarm": "", "escalation": "【升级】", "reminder": "【提醒：仍未处理】"},
    "en": {"alarm": "", "escalation": "[Escalated] ", "reminder": "[Reminder: still open] "},
}

# (subject, body) per language. The subject alone must be enough on a lock screen.
TEMPLATES: Final[Mapping[str, tuple[str, str]]] = {
    "zh": (
        "{kind_word}[{priority_word}] {type_word}：{who}，{where}",
        "{type_word}（{priority_word}）\n"
        "对象：{who}\n"
        "地点：{where}\n"
        "时间：{when}（{tz}）\n"
        "已重复 {count} 次\n"
        "{action}\n"
        "报警编号：{alarm_id}",
    ),
    "en": (
        "{kind_word}[{priority_word}] {type_word}: {who}, {where}",
        "{type_word} ({priority_word})\n"
        "Who: {who}\n"
        "Where: {where}\n"
        "When: {when} ({tz})\n"
        "Seen {count} time(s)\n"
        "{action}\n"
        "Alarm id: {alarm_id}",
    ),
}

# What the reader should do. Staff acknowledge; family and the regulator's desk cannot run
# the command line, and are told who is handling it and whom to call instead.
PUBLIC_ROLES: Final = ("family", "regulator_desk")
ACTION_WORDS: Final[Mapping[str, Mapping[str, str]]] = {
    "zh": {
        "staff": "确认请执行：ankang alarms ack {alarm_id} --by 您的姓名",
        "public": "护理团队已收到通知并正在处理。如需了解情况，请致电机构值班电话。",
    },
    "en": {
        "staff": "To acknowledge: ankang alarms ack {alarm_id} --by YOUR-NAME",
        "public": (
            "The care team has been notified and is handling it. For news, call the facility's duty phone."
        ),
    },
}

DIGEST_TEMPLATES: Final[Mapping[str, tuple[str, str]]] = {
    "zh": ("另有 {n} 条报警", "另有 {n} 条报警：\n{lines}\n查看：ankang alarms list"),
    "en": ("{n} more alarms", "{n} more alarms:\n{lines}\nSee them: ankang alarms list"),
}


@dataclass(frozen=True, slots=True)
class MessageFields:
    """What a message may say about one alarm. Built by the escalation step from the
    alarm's own row and the registry; nothing here comes from another alarm."""

    alarm_id: int
    alarm_type: str
    priority: str
    kind: str  # alarm, escalation, reminder
    opened_at: datetime
    tz: str
    count: int
    facility: str
    room: str | None
    bed: str | None
    resident: str | None
    device: str | None
    subject: str
    role: str = "care_worker"  # the recipient's role: family and regulator desks get no CLI command


def _local(t: datetime, tz: str) -> tuple[datetime, str]:
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        # A bad time zone in the registry must not cost the message: say UTC plainly.
        return t.astimezone(ZoneInfo("UTC")), "UTC"
    return t.astimezone(zone), tz


def _words(fields: MessageFields, language: str) -> dict[str, object]:
    zh = language == "zh"
    who = fields.resident or (
        (f"设备 {fields.device}" if zh else f"device {fields.device}") if fields.device else fields.subject
    )
    parts = [fields.facility]
    if fields.room:
        parts.append(f"{fields.room} 房间" if zh else f"room {fields.room}")
    if fields.bed:
        parts.append(f"{fields.bed} 床" if zh else f"bed {fields.bed}")
    local, tz = _local(fields.opened_at, fields.tz)
    values: dict[str, object] = asdict(fields)
    values.update(
        who=who,
        where=("，" if zh else ", ").join(parts),
        when=local.strftime("%Y-%m-%d %H:%M:%S"),
        short_when=local.strftime("%H:%M"),
        tz=tz,
        type_word=TYPE_WORDS[language].get(fields.alarm_type, fields.alarm_type),
        priority_word=PRIORITY_WORDS[language].get(fields.priority, fields.priority),
        kind_word=KIND_WORDS[language].get(fields.kind, ""),
        action=ACTION_WORDS[language]["public" if fields.role in PUBLIC_ROLES else "staff"].format(
            alarm_id=fields.alarm_id
        ),
    )
    return values


class _Strict(dict[str, object]):
    def __missing__(self, key: str) -> object:
        raise TemplateError(f"template field {{{key}}} is not known")


def _format(template: str, values: dict[str, object]) -> str:
    try:
        return string.Formatter().vformat(template, (), _Strict(values))
    except TemplateError:
        raise
    except (IndexError, KeyError, ValueError, AttributeError) as exc:
        raise TemplateError(f"template cannot be rendered: {exc}") from exc


def render(
    fields: MessageFields, language: str, templates: Mapping[str, tuple[str, str]] = TEMPLATES
) -> tuple[str, str]:
    """(subject, body) in ``language``; ``TemplateError`` names what is missing."""
    if language not in templates:
        raise TemplateError(f"no template in language {language!r}")
    subject, body = templates[language]
    values = _words(fields, language if language in TYPE_WORDS else "en")
    return _format(subject, values), _format(body, values)


def render_digest(subjects: Sequence[str], language: str) -> tuple[str, str]:
    """A digest of several held messages, listed by their subjects."""
    subject, body = DIGEST_TEMPLATES.get(language, DIGEST_TEMPLATES["en"])
    values: dict[str, object] = {"n": len(subjects), "lines": "\n".join(f"- {s}" for s in subjects)}
    return _format(subject, values), _format(body, values)
