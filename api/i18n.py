"""The pages' words in Chinese and English. Alarm and device names come from here too, so
that a console in either language reads the same."""

from __future__ import annotations

from typing import Final

from alerts.templates import LANGUAGES

_TEXT: Final[dict[str, tuple[str, str]]] = {
    # (zh, en)
    "app": ("安康", "ankang"),
    "login": ("登录", "Log in"),
    "logout": ("退出", "Log out"),
    "username": ("用户名", "Username"),
    "password": ("密码", "Password"),
    "login_failed": ("用户名或密码错误", "Wrong username or password"),
    "login_throttled": ("失败次数过多，请稍后再试", "Too many failed logins; try again later"),
    "console": ("值班台", "Care console"),
    "family": ("家属", "Family"),
    "regulator": ("监管看板", "Regulator dashboard"),
    "live_alarms": ("实时告警", "Live alarms"),
    "no_alarms": ("当前没有未处理的告警", "No open alarms"),
    "acknowledge": ("确认", "Acknowledge"),
    "resolve": ("处理完毕", "Resolve"),
    "note": ("备注", "Note"),
    "false_alarm": ("误报", "False alarm"),
    "real_incident": ("真实事件", "Real incident"),
    "test": ("测试", "Test"),
    "cleared": ("已自动恢复", "Cleared"),
    "evidence": ("证据", "Evidence"),
    "rooms": ("房间与设备", "Rooms and devices"),
    "online": ("在线", "online"),
    "offline": ("离线", "offline"),
    "unknown": ("未知", "unknown"),
    "battery_low": ("电量低", "battery low"),
    "fault": ("故障", "fault"),
    "tamper": ("防拆", "tamper"),
    "high": ("高", "high"),
    "medium": ("中", "medium"),
    "low": ("低", "low"),
    "open": ("未确认", "open"),
    "acknowledged": ("已确认", "acknowledged"),
    "resolved": ("已处理", "resolved"),
    "opened_at": ("发生时间", "Opened"),
    "by": ("处理人", "by"),
    "count": ("次数", "count"),
    "sound_on": ("开启提示音", "Sound on"),
    "sound_off": ("提示音已开", "Sound is on"),
    "connected": ("实时连接正常", "Live"),
    "disconnected": ("实时连接中断，正在重连…", "Connection lost, reconnecting…"),
    "paused": ("实时更新已暂停", "Paused"),
    # {since} is a time of day (HH:MM)
    "stream_degraded": (
        "实时更新已暂停：自 {since} 起无法连接数据库。期间产生的告警将在恢复后显示。",
        "Live updates paused: the database has been unreachable since {since}."
        " Alarms raised meanwhile will appear when it returns.",
    ),
    "stream_reconnecting": (
        "实时连接中断，正在重连…期间产生的告警将在重连后显示。",
        "The live connection is lost; reconnecting… Alarms raised meanwhile will appear once it is back.",
    ),
    "today": ("今日状况", "Today"),
    "recent_alarms": ("近 7 天告警", "Alarms in the last 7 days"),
    "what_was_done": ("处理情况", "What was done"),
    "heart_rate": ("心率", "Heart rate"),
    "breathing": ("呼吸", "Breathing"),
    "in_bed": ("在床", "In bed"),
    "out_of_bed": ("离床", "Out of bed"),
    "devices": ("设备", "Devices"),
    "no_data": ("暂无数据", "No data yet"),
    "district": ("辖区", "District"),
    "facility": ("机构", "Facility"),
    "coverage": ("烟感覆盖率", "Smoke-detector coverage"),
    "online_rate": ("设备在线率", "Devices online"),
    "faults_open": ("未处理故障", "Open faults"),
    "faults_over_2h": ("超过 2 小时的故障", "Faults open > 2 h"),
    "fire_alarms": ("火警", "Fire alarms"),
    "false_rate": ("误报率", "False-alarm rate"),
    "false_days": ("误报超过 5 次的天数", "Days with > 5 false alarms"),
    "ack_p50": ("确认用时中位数", "Median time to acknowledge"),
    "ack_p90": ("确认用时 P90", "p90 time to acknowledge"),
    "test_compliance": ("月度测试合规", "Monthly alarm tests"),
    "nursing_share": ("护理型床位占比", "Nursing-type beds"),
    "goal": ("目标", "goal"),
    "alarms_per_day": ("每日告警", "Alarms per day"),
    "window_days": ("统计区间：近 30 天", "Window: last 30 days"),
    "language": ("English", "中文"),
    "resident": ("老人", "Resident"),
    "room": ("房间", "Room"),
    "bed": ("床位", "Bed"),
    "none": ("无", "none"),
    "seconds": ("秒", "s"),
    "minutes": ("分钟", "min"),
}

ALARM_TYPES: Final[dict[str, tuple[str, str]]] = {
    "fall": ("跌倒", "Fall"),
    "fire": ("火警", "Fire"),
    "fire_prealarm": ("火灾预警", "Fire pre-alarm"),
    "gas": ("燃气泄漏", "Gas leak"),
    "sos": ("紧急呼叫", "SOS"),
    "bed_exit": ("夜间离床", "Bed exit"),
    "vitals": ("生命体征异常", "Abnormal vitals"),
    "inactivity": ("长时间无活动", "Inactivity"),
    "device_offline": ("设备离线", "Device offline"),
    "low_battery": ("电量低", "Low battery"),
    "tamper": ("设备被拆", "Tamper"),
    "fault": ("设备故障", "Device fault"),
    "water_leak": ("漏水", "Water leak"),
    "ingest_delayed": ("数据延迟", "Data delayed"),
}


def language_of(requested: str | None, account: str | None) -> str:
    for lang in (requested, account):
        if lang in LANGUAGES:
            return str(lang)
    return "zh"


def texts(lang: str) -> dict[str, str]:
    i = 0 if lang == "zh" else 1
    return {key: pair[i] for key, pair in _TEXT.items()}


def alarm_names(lang: str) -> dict[str, str]:
    i = 0 if lang == "zh" else 1
    return {key: pair[i] for key, pair in ALARM_TYPES.items()}
