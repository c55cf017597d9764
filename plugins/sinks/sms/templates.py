"""Message texts: an event and its device become the fields of a template (Chinese by
default), then a text that fits the provider's parts.

Fields every template may use (all strings; they are also the ``params`` a cloud provider
fills its pre-approved template with): ``device`` (name), ``device_id``, ``location``,
``project``, ``group``, ``channel``, ``where`` (location, device and channel together),
``what`` (温度报警, 设备离线, ...), ``quantity`` (温度), ``value``, ``unit``, ``set_point``,
``peak``, ``reading`` (温度92.5°C，设定值80°C, or empty), ``level`` (预警/报警/故障/提示),
``kind`` (报警/故障/离线/恢复), ``time`` and ``raised_time`` (local time of the site),
``tz``, ``duration`` (recoveries: how long it lasted), ``event_id``, ``escalation`` (empty,
or 未确认，升级通知 on an escalation). Summaries: ``count``, ``counts``, ``items``, ``time``,
``tz``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from hub.model import ALARM_RULES, FAULT_CODES, QUANTITIES, Event, EventState, Level
from hub.validate import Invalid, describe
from plugins.sinks.sms import textparts

MESSAGE_KINDS = ("alarm", "fault", "offline", "recovery")
TEMPLATE_NAMES = (*MESSAGE_KINDS, "summary")

DEFAULTS: dict[str, str] = {
    "alarm": "【电气火灾报警】{where}{what}：{reading}，级别{level}。{escalation}时间{time}",
    "fault": "【设备故障】{where}{what}，请检修。{escalation}时间{time}",
    "offline": "【设备离线】{where}已离线，请检查供电与通信。{escalation}时间{time}",
    "recovery": "【已恢复】{where}{what}已恢复，持续{duration}。时间{time}",
    "summary": "【报警汇总】{count}条新消息（{counts}）：{items}。时间{time}",
}
#: one entry of a summary, per message kind
LINES: dict[str, str] = {
    "alarm": "{where}{what}{value}{unit}",
    "fault": "{where}{what}",
    "offline": "{where}离线",
    "recovery": "{where}{what}已恢复",
}

EVENT_FIELDS = frozenset((
    "device", "device_id", "location", "project", "group", "channel", "where", "what",
    "quantity", "value", "unit", "set_point", "peak", "reading", "level", "kind", "time",
    "raised_time", "tz", "duration", "event_id", "escalation"))
SUMMARY_FIELDS = frozenset(("count", "counts", "items", "time", "tz"))

LEVELS = {Level.INFO: "提示", Level.WARNING: "预警", Level.ALARM: "报警", Level.FAULT: "故障"}
KIND_LABELS = {"alarm": "报警", "fault": "故障", "offline": "离线", "recovery": "恢复"}
_CHANNELS = {"A": "A相", "B": "B相", "C": "C相", "N": "N线"}


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    location: str = ""
    project: str = ""
    group: str = ""


def check_template(name: str, text: object) -> str:
    """A template of ``name`` whose fields all exist (raises :class:`Invalid`)."""
    if not isinstance(text, str) or not text.strip():
        raise Invalid(f"expected a non-empty template string, got {describe(text)}")
    allowed = SUMMARY_FIELDS if name == "summary" else EVENT_FIELDS
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as e:
        raise Invalid(f"{text!r} is not a valid template: {e}") from None
    for f in fields:
        if f not in allowed:
            raise Invalid(f"{{{f}}} is not a field of {name} messages; known: "
                          f"{', '.join(sorted(allowed))}")
    try:
        text.format(**{f: "" for f in allowed})
    except (ValueError, IndexError, KeyError) as e:
        raise Invalid(f"{text!r} does not render: {e}") from None
    return text


def number(v: float | None) -> str:
    """72.5 → "72.5", 350.0 → "350", 0.123456 → "0.12"; None → ""."""
    if v is None:
        return ""
    text = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def duration(seconds: float | None) -> str:
    """45 → "45秒", 312 → "5分12秒", 3725 → "1小时2分", 93600 → "1天2小时": two units at
    most, the smaller one left out when it is 0."""
    if seconds is None:
        return "未知"
    s = max(0, round(seconds))
    for size, unit, small, sunit in ((86400, "天", 3600, "小时"), (3600, "小时", 60, "分"),
                                     (60, "分", 1, "秒")):
        if s >= size:
            rest = s % size // small
            return f"{s // size}{unit}" + (f"{rest}{sunit}" if rest else "")
    return f"{s}秒"


def what(event: Event) -> str:
    if event.code in ALARM_RULES:
        return ALARM_RULES[event.code].label
    if event.code in FAULT_CODES:
        return FAULT_CODES[event.code]
    if event.code in QUANTITIES:
        return QUANTITIES[event.code].label + ("报警" if event.kind.value == "alarm" else "故障")
    return event.message or event.code


def quantity_of(event: Event) -> tuple[str, str]:
    """(Chinese label, unit) of the quantity an event is about, or ("", "")."""
    name = ALARM_RULES[event.code].quantity if event.code in ALARM_RULES else event.code
    q = QUANTITIES.get(name)
    if q is None or q.kind == "bool":
        return (q.label if q else ""), ""
    return q.label, q.unit


class Renderer:
    """Templates + the site's time zone + the provider's length rules."""

    def __init__(self, templates: Mapping[str, str], tz: ZoneInfo, max_parts: int = 4,
                 reserved: int = 0) -> None:
        self.templates = {**DEFAULTS, **templates}
        self.tz = tz
        self.max_parts = max_parts
        self.reserved = reserved

    def local(self, ts: float | None) -> str:
        if ts is None:
            return ""
        return datetime.fromtimestamp(ts, self.tz).strftime("%Y-%m-%d %H:%M:%S")

    def fields(self, event: Event, kind: str, info: DeviceInfo, escalation: int = 0,
               unacked_for: float = 0.0) -> dict[str, str]:
        label, unit = quantity_of(event)
        channel = _CHANNELS.get(event.channel, event.channel)
        where = f"{info.location} {info.name}" if info.location else info.name
        where += channel
        show_value = event.value is not None and kind in ("alarm", "recovery") and bool(unit)
        value = number(event.value) if show_value else ""
        set_point = number(event.set_point) if unit else ""
        reading = f"{label}{value}{unit}" if value else ""
        if reading and set_point:
            reading += f"，设定值{set_point}{unit}"
        recovered = event.state is EventState.CLEARED
        raised_ts = event.raised_ts if recovered else event.ts
        return {
            "device": info.name, "device_id": event.device, "location": info.location,
            "project": info.project, "group": info.group, "channel": channel,
            "where": where, "what": what(event), "quantity": label, "value": value,
            "unit": unit if value else "", "set_point": set_point,
            "peak": number(event.peak) if unit else "", "reading": reading or "见平台",
            "level": LEVELS.get(event.level, event.level.value), "kind": KIND_LABELS[kind],
            "time": self.local(event.ts), "raised_time": self.local(raised_ts),
            "tz": self.tz.key, "duration": duration(event.duration) if recovered else "",
            "event_id": event.id,
            "escalation": (f"{round(unacked_for / 60)}分钟未确认，升级通知（第{escalation}级）。"
                           if escalation else ""),
        }

    def text(self, kind: str, fields: Mapping[str, str]) -> str:
        return textparts.fit(self.templates[kind].format(**fields), self.max_parts,
                             self.reserved)

    def line(self, kind: str, fields: Mapping[str, str]) -> str:
        return LINES[kind].format(**fields)

    def summary(self, entries: Sequence[tuple[str, str]], now: float) -> dict[str, str]:
        """The fields of a summary of ``entries`` ((kind, line) pairs); as many lines as
        fit the parts, then 等N条."""
        counts: dict[str, int] = {}
        for kind, _ in entries:
            counts[kind] = counts.get(kind, 0) + 1
        base = {"count": str(len(entries)), "time": self.local(now), "tz": self.tz.key,
                "counts": "，".join(f"{KIND_LABELS[k]}{n}" for k, n in counts.items())}
        lines = [line for _, line in entries]
        for keep in range(len(lines), 0, -1):
            items = "；".join(lines[:keep])
            if keep < len(lines):
                items += f"等{len(lines)}条"
            f = {**base, "items": items}
            text = self.templates["summary"].format(**f)
            if textparts.parts(text + "中" * self.reserved) <= self.max_parts:
                return f
        return {**base, "items": f"共{len(lines)}条，详见平台"}
