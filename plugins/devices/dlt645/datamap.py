"""Data-identifier maps: a YAML file per meter family → frozen, validated dataclasses.

Like the Modbus register maps (:mod:`plugins.devices.modbus.registermap`), a map is data,
checked completely on load, every problem reported at once with the map file and key path::

    conf/devices/meter.yaml: points[2].format: 'XX.X.X' is not a BCD format such as …

A DL/T 645 meter is read one data identifier (DI) at a time; a *block* identifier (DI1 or
DI0 = FFH, e.g. ``0201FF00``: the three phase voltages) returns several values back to
back in one reply, which saves round trips over a DTU. The format is described in
``conf/devices/dlt645-meter-example.yaml``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hub.validate import Checker, Invalid, Path, Section, boolean, describe, integer, string
from plugins.devices.modbus.registermap import (
    channel,
    list_items,
    map_header,
    nonzero,
    quantity,
    read_map_file,
)
from plugins.protocols.dlt645.values import Format, parse_format
from plugins.protocols.modbus.values import conversion

__all__ = ["DataMap", "Group", "MapPoint", "check_map", "di_text", "load_map"]

_DI = re.compile(r"[0-9A-Fa-f]{8}")
#: What ``commands.close`` may say: 1BH (合闸允许: the customer closes the breaker by hand)
#: or 1CH (直接合闸: the meter closes it itself).
CLOSE_MODES = {"allow": "close", "direct": "close_direct"}


def di_text(di: int) -> str:
    return f"{di:08X}"


@dataclass(frozen=True, slots=True)
class MapPoint:
    """One value: its place in a reply and how it becomes canonical:
    ``canonical = value * scale * factor + unit_offset``."""

    quantity: str
    channel: str
    format: Format
    signed: bool = False
    scale: float = 1.0
    factor: float = 1.0
    unit_offset: float = 0.0
    start: int = 0  # bytes into the reply's data (after the data identifier)


@dataclass(frozen=True, slots=True)
class Group:
    """One read: a data identifier and the points its reply carries, in order."""

    di: int
    points: tuple[MapPoint, ...]
    size: int  # data bytes of the reply after the data identifier

    def __str__(self) -> str:
        return f"DI {di_text(self.di)}"


@dataclass(frozen=True)
class DataMap:
    """A validated data-identifier map. ``commands`` maps the hub's actions (``trip``,
    ``close``) to the 1CH action they send (:data:`plugins.protocols.dlt645.CONTROL_ACTIONS`);
    an action absent from it is refused."""

    file: str
    groups: tuple[Group, ...]
    commands: dict[str, str]
    name: str = ""
    description: str = ""
    poll_interval: float = 60.0
    heartbeat_interval: float | None = None
    timeout_count: int | None = None


# ---- loading ----------------------------------------------------------------------------


def load_map(path: str, checker: Checker | None = None, at: Path | None = None,
             base: str | None = None) -> DataMap | None:
    """Read and check the map at ``path``: every problem raised together as
    :class:`hub.validate.ConfigError` without ``checker``, else added to it (then ``None``
    is returned). A relative ``path`` is looked up in the working directory, then in
    ``base`` (the directory of ``hub.yaml``); ``at`` is the key that named the file."""
    return read_map_file(path, check_map, checker, at, base)


def check_map(data: Any, file: str, checker: Checker) -> DataMap | None:
    """Check a parsed map; errors go to ``checker`` (paths in ``file``). ``None`` if any."""
    before = len(checker.errors)
    top = Section(checker, Path(file), data)
    fields = map_header(top, 60.0)
    groups: list[tuple[Path, Group | None]] = []
    for s in list_items(top, "points", lambda s: s):
        di = s.get("di", data_identifier)
        point = _point(s, 0, ("di",))
        groups.append((s.path, Group(di, (point,), point.format.size)
                       if None not in (di, point) else None))
    for s in list_items(top, "blocks", lambda s: s):
        groups.append((s.path, _block(s)))
    commands = _commands(top.section("commands"))
    top.finish()
    if not groups:
        checker.error(top.path / "points", "a map needs at least one point or block")
    _no_duplicates(checker, groups)
    if len(checker.errors) > before:
        return None
    return DataMap(file=file, groups=tuple(g for _, g in groups if g), commands=commands,
                   **fields)


def data_identifier(v: Any) -> int:
    """``"02010100"``: 8 hexadecimal digits, DI3 first as the standard prints them."""
    if isinstance(v, int) and not isinstance(v, bool):
        raise Invalid(f"{v} is a number: write the data identifier in quotes, e.g. "
                      "\"02010100\" (unquoted, YAML reads 02010100 as octal)")
    if not isinstance(v, str) or not _DI.fullmatch(v):
        raise Invalid(f"{describe(v)} is not a data identifier of 8 hexadecimal digits "
                      "(e.g. \"02010100\")")
    return int(v, 16)


def bcd_format(v: Any) -> Format:
    try:
        return parse_format(v)
    except ValueError as e:
        raise Invalid(str(e)) from None


def _point(s: Section, start: int, extra: tuple[str, ...] = ()) -> MapPoint | None:
    q = s.get("quantity", quantity)
    fmt = s.get("format", bcd_format)
    unit = s.get("unit", string(), None)
    factor, unit_offset = (1.0, 0.0)
    if q is not None:
        factor, unit_offset = s.checker.check(s.path / "unit", conversion, q, unit,
                                              default=(1.0, 0.0))
    point = MapPoint(q, s.get("channel", channel, ""), fmt, s.get("signed", boolean, False),
                     s.get("scale", nonzero, 1.0), factor, unit_offset, start)
    s.finish(allowed_extra=("name", "comment") + extra)
    return None if None in (q, fmt, point.channel, point.signed, point.scale) else point


def _block(s: Section) -> Group | None:
    di = s.get("di", data_identifier)
    points: list[MapPoint | None] = []
    start = 0
    for sub in list_items(s, "points", lambda sub: sub):
        if "skip" in sub:
            # bytes of values the map does not use (a tariff, a phase the meter lacks)
            start += sub.get("skip", integer(1, 200)) or 0
            sub.finish(allowed_extra=("comment",))
            continue
        point = _point(sub, start)
        points.append(point)
        start += point.format.size if point else 0
    if "points" not in s.data:
        s.checker.error(s.path / "points", "is required (the values of the block, in order)")
    elif not points:
        s.checker.error(s.path / "points", "lists no values")
    if start > 196:  # L = 4 (the DI) + data, at most 200 in a read reply
        s.checker.error(s.path / "points", f"{start} bytes do not fit one reply (at most 196 "
                        "after the data identifier)")
    s.finish(allowed_extra=("name", "comment"))
    if di is None or None in points or not points:
        return None
    return Group(di, tuple(points), start)  # type: ignore[arg-type]


def _commands(s: Section) -> dict[str, str]:
    out: dict[str, str] = {}
    if s.get("trip", boolean, False):
        out["trip"] = "trip"
    close = s.raw("close", False)
    if close is True or close in CLOSE_MODES:
        out["close"] = CLOSE_MODES["allow" if close is True else close]
    elif close is not False:
        s.checker.error(s.path / "close", f"{describe(close)} is not true, false, "
                        f"{' or '.join(CLOSE_MODES)}")
    s.finish(allowed_extra=("comment",))
    return out


def _no_duplicates(checker: Checker, groups: list[tuple[Path, Group | None]]) -> None:
    dis: dict[int, Path] = {}
    series: dict[tuple[str, str], Path] = {}
    for path, g in groups:
        if g is None:
            continue
        if g.di in dis:
            checker.error(path / "di", f"{di_text(g.di)} is already read by {dis[g.di]}")
        dis.setdefault(g.di, path)
        for p in g.points:
            key = (p.quantity, p.channel)
            if key in series:
                where = f"/{p.channel}" if p.channel else ""
                checker.error(path, f"{p.quantity}{where} is already read by {series[key]}")
            series.setdefault(key, path)
