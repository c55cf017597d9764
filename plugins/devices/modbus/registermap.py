"""Register maps: a YAML file per device family → frozen, validated dataclasses.

A map is data, not code, so a map for a new detector is a file, not a release. It is
checked completely on load and every problem is reported at once, naming the map file and
the key path, the way ``hub check`` reports ``hub.yaml``::

    conf/devices/efd.yaml: points[3].type: 'u17' is not one of u16, s16, u32, s32, f32, bit

The format is described in ``conf/devices/efd-example.yaml``; commands are parsed in
:mod:`plugins.devices.modbus.commands`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

from hub.model import (
    QUANTITIES,
    EventKind,
    Level,
    Quality,
    SchemaError,
    check_channel,
    quantity_names,
)
from hub.validate import (
    Checker,
    Invalid,
    Path,
    Section,
    choice,
    describe,
    integer,
    number,
    string,
)
from plugins.protocols.modbus.rtu import BIT_READS, READS
from plugins.protocols.modbus.values import ORDERS, TYPES, conversion

__all__ = ["Point", "RegisterMap", "StatusBit", "StatusWord", "check_map", "list_items",
           "load_map", "map_header", "read_map_file"]

_CODE = r"[a-z][a-z0-9_]*"
_OPEN_SHORT = ("channel_open", "channel_short")


@dataclass(frozen=True, slots=True)
class Point:
    """One measured value: where it is read and how its raw value becomes canonical.

    ``canonical = ((raw * scale) + offset) * factor + unit_offset``, where ``factor`` and
    ``unit_offset`` convert the map's ``unit`` to the quantity's canonical unit.
    """

    quantity: str
    channel: str
    function: int
    address: int
    type: str
    byte_order: str = "big"
    word_order: str = "big"
    bit: int | None = None  # for type bit on a register: which bit
    scale: float = 1.0
    offset: float = 0.0
    factor: float = 1.0
    unit_offset: float = 0.0
    sentinels: frozenset[int | float] = frozenset()  # raw values meaning "no value"
    on_sentinel: str = "skip"  # "skip": no reading; "bad": a reading of quality BAD

    @property
    def count(self) -> int:
        """Registers (or bits, for functions 01/02) the point occupies."""
        return 1 if self.function in BIT_READS else TYPES[self.type]


@dataclass(frozen=True, slots=True)
class StatusBit:
    """One flag of a status word, reported as an alarm or fault event on every poll."""

    bit: int
    kind: EventKind
    code: str
    channel: str = ""
    level: Level = Level.ALARM
    quality: Quality | None = None  # readings of ``channel`` get this quality while set
    message: str = ""


@dataclass(frozen=True, slots=True)
class StatusWord:
    """A register (u16), a register pair (u32) or a run of coils/inputs (bit) holding flags."""

    function: int
    address: int
    type: str
    bits: tuple[StatusBit, ...]
    byte_order: str = "big"
    word_order: str = "big"

    @property
    def count(self) -> int:
        if self.function in BIT_READS:
            return max(b.bit for b in self.bits) + 1
        return TYPES[self.type]


def _empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class RegisterMap:
    """A validated register map. ``commands`` maps an action to ``{channel: writes}``
    (channel ``""``: the device as a whole); ``thresholds`` maps ``(rule, channel)`` to the
    write that sets that set point."""

    file: str
    points: tuple[Point, ...]
    status: tuple[StatusWord, ...] = ()
    commands: Mapping[str, Mapping[str, tuple[Any, ...]]] = field(default_factory=_empty)
    thresholds: Mapping[tuple[str, str], Any] = field(default_factory=_empty)
    name: str = ""
    description: str = ""
    poll_interval: float = 10.0
    heartbeat_interval: float | None = None
    timeout_count: int | None = None
    max_gap: int = 0  # unused registers (bits for 01/02) a merged read may span
    max_registers: int = 125
    max_bits: int = 2000
    #: actions whose writes are confirmed by reading them back after the echo (coils with
    #: 01, registers with 03); momentary command coils that clear themselves must not be here
    readback: frozenset[str] = frozenset()


# ---- loading ----------------------------------------------------------------------------


def _readback(top: Section, commands: Mapping[str, Any],
              thresholds: Mapping[tuple[str, str], Any]) -> frozenset[str]:
    """``readback: true`` (every action) or a list of actions of this map."""
    actions = set(commands) | ({"set_threshold"} if thresholds else set())
    raw = top.raw("readback", False)
    if raw is True:
        return frozenset(actions)
    if raw is False:
        return frozenset()
    if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
        top.checker.error(top.path / "readback",
                          f"expected true, false or a list of actions, got {describe(raw)}")
        return frozenset()
    unknown = [a for a in raw if a not in actions]
    if unknown:
        top.checker.error(top.path / "readback", f"{', '.join(map(repr, unknown))} not among "
                          f"this map's commands ({', '.join(sorted(actions)) or 'none'})")
    return frozenset(raw) & frozenset(actions)


def load_map(path: str, checker: Checker | None = None, at: Path | None = None,
             base: str | None = None) -> RegisterMap | None:
    """Read and check the map at ``path``.

    Without ``checker`` every problem is raised together as :class:`ConfigError`. With one
    (``hub check``), problems are added to it and ``None`` is returned; ``at`` is the key
    that named the file, for "cannot read" errors. A relative ``path`` is looked up in
    ``base`` (the directory of ``hub.yaml``), then in the working directory (configurations
    written relative to a checkout).
    """
    return read_map_file(path, check_map, checker, at, base)


def read_map_file(path: str, check: Callable[[Any, str, Checker], Any],
                  checker: Checker | None = None, at: Path | None = None,
                  base: str | None = None) -> Any:
    """Read the YAML map at ``path`` and pass it to ``check(data, path, checker)``: what
    :func:`load_map` does, for any kind of map (the ``dlt645`` model's too). Errors as
    :func:`load_map` describes; ``None`` when the file cannot be read or parsed."""
    own = checker is None
    checker = checker or Checker()
    found = path
    if base and not os.path.isabs(path) and os.path.exists(os.path.join(base, path)):
        found = os.path.join(base, path)
    result = None
    try:
        with open(found, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        text = f"cannot read {path}: {e.strerror}"
        if at is not None:  # the error belongs to the key that named the file
            checker.error(at, text)
        else:
            checker.errors.append(f"{path}: {text}")
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}:" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        checker.errors.append(f"{path}:{where} not valid YAML: {problem}")
    else:
        result = check(data, path, checker)
    if own:
        checker.raise_if_any()
    return result


def check_map(data: Any, file: str, checker: Checker) -> RegisterMap | None:
    """Check a parsed map; errors go to ``checker`` (paths in ``file``). ``None`` if any."""
    from plugins.devices.modbus.commands import check_commands  # commands need the types here

    before = len(checker.errors)
    top = Section(checker, Path(file), data)
    orders = orders_of(top, ("big", "big"))
    fields: dict[str, Any] = dict(
        **map_header(top, 10.0),
        max_gap=top.get("max_gap", integer(0, 1999), 0),
        max_registers=top.get("max_registers", integer(2, 125), 125),
        max_bits=top.get("max_bits", integer(1, 2000), 2000),
    )
    points = list_items(top, "points", lambda s: _point(s, orders))
    status = list_items(top, "status", lambda s: _status(s, orders))
    commands, thresholds = check_commands(top.section("commands"), orders)
    fields["readback"] = _readback(top, commands, thresholds)
    top.finish()
    if not points and not status:
        checker.error(top.path / "points", "a map needs at least one point or status word")
    _no_duplicates(checker, top.path / "points", points)
    _one_flag_per_event(checker, top.path / "status", status)
    for i, word in enumerate(status):  # 32-bit points fit since max_registers >= 2
        if word and word.function in BIT_READS and word.bits and word.count > (
                fields["max_bits"] or 2000):
            checker.error(top.path / "status" / i, f"spans {word.count} bits, more than "
                          f"max_bits ({fields['max_bits']}) allows in one read")
    if len(checker.errors) > before:
        return None
    return RegisterMap(
        file=file, points=tuple(points), status=tuple(status),
        commands=MappingProxyType(commands), thresholds=MappingProxyType(thresholds),
        **fields)


def map_header(top: Section, poll_interval: float) -> dict[str, Any]:
    """The top-level keys every device map has: ``name``, ``description``,
    ``poll_interval`` (default ``poll_interval``), ``heartbeat_interval``,
    ``timeout_count``."""
    return dict(
        name=top.get("name", string(), ""),
        description=top.get("description", string(), ""),
        poll_interval=top.get("poll_interval", number(0.1, 86400, "s"), poll_interval),
        heartbeat_interval=top.get("heartbeat_interval", number(1, 86400, "s"), None),
        timeout_count=top.get("timeout_count", integer(1, 1000), None),
    )


# ---- sections ---------------------------------------------------------------------------


def list_items(top: Section, key: str, parse: Callable[[Section], Any]) -> list[Any]:
    """``parse`` of a :class:`Section` per item of the list at ``key`` (absent: none)."""
    raw = top.raw(key, [])
    if raw is None:
        return []
    if not isinstance(raw, list):
        top.checker.error(top.path / key, f"expected a list, got {describe(raw)}")
        return []
    return [parse(Section(top.checker, top.path / key / i, item)) for i, item in enumerate(raw)]


def orders_of(s: Section, default: tuple[str, str]) -> tuple[str, str]:
    """``order: CDAB`` or ``byte_order``/``word_order``, falling back to ``default``."""
    if "order" in s:
        if "byte_order" in s or "word_order" in s:
            s.checker.error(s.path / "order", "give either order or byte_order/word_order")
            s.raw("byte_order", None), s.raw("word_order", None)  # reported once, here
        return ORDERS.get(s.get("order", choice(*ORDERS)), default)
    big_little = choice("big", "little")
    return (s.get("byte_order", big_little, default[0]) or default[0],
            s.get("word_order", big_little, default[1]) or default[1])


def read_function(v: Any) -> int:
    if v not in READS or isinstance(v, bool):
        raise Invalid(f"{describe(v)} is not a read function (1, 2, 3 or 4)")
    return v


def channel(v: Any) -> str:
    v = string()(v)
    try:
        return check_channel(v)
    except SchemaError as e:
        raise Invalid(str(e)) from None


def quantity(v: Any) -> str:
    if v not in QUANTITIES:
        raise Invalid(f"{describe(v)} is not a canonical quantity "
                      f"(one of {quantity_names()})")
    return v


def nonzero(v: Any) -> float:
    v = number()(v)
    if v == 0:
        raise Invalid("0 would turn every value into the offset")
    return v


def _sentinels(v: Any) -> frozenset[int | float]:
    values = v if isinstance(v, list) else [v]
    for x in values:
        number()(x)
    return frozenset(values)


def _point(s: Section, orders: tuple[str, str]) -> Point | None:
    q = s.get("quantity", quantity)
    function = s.get("function", read_function)
    address = s.get("address", integer(0, 65535))
    bits = function in BIT_READS
    type_ = s.get("type", choice(*TYPES), "bit" if bits else "u16")
    if bits and type_ not in (None, "bit"):
        s.checker.error(s.path / "type", f"{type_!r}: function {function:02d} reads single "
                        "bits, so the type is bit")
    bit = s.get("bit", integer(0, 15), None)
    if type_ == "bit" and function in (3, 4) and bit is None and "bit" not in s:
        s.checker.error(s.path / "bit", "is required for type bit of a register (0..15)")
    if bit is not None and (type_ != "bit" or bits):
        s.checker.error(s.path / "bit", "only applies to type bit on function 3 or 4")
    byte_order, word_order = orders_of(s, orders)
    unit = s.get("unit", string(), None)
    factor, unit_offset = (1.0, 0.0)
    if q is not None:
        factor, unit_offset = s.checker.check(s.path / "unit", conversion, q, unit,
                                              default=(1.0, 0.0))
    point = Point(
        quantity=q, channel=s.get("channel", channel, ""), function=function,
        address=address, type=type_, byte_order=byte_order, word_order=word_order, bit=bit,
        scale=s.get("scale", nonzero, 1.0), offset=s.get("offset", number(), 0.0),
        factor=factor, unit_offset=unit_offset,
        sentinels=s.get("sentinel", _sentinels, frozenset()),
        on_sentinel=s.get("on_sentinel", choice("skip", "bad"), "skip"),
    )
    s.finish(allowed_extra=("name", "comment"))
    if None not in (function, address, type_) and address + point.count > 0x10000:
        s.checker.error(s.path / "address", f"{address} + {point.count} runs past 65535")
    return point


def _status(s: Section, orders: tuple[str, str]) -> StatusWord | None:
    function = s.get("function", read_function)
    address = s.get("address", integer(0, 65535))
    bits = function in BIT_READS
    type_ = s.get("type", choice("u16", "u32", "bit"), "bit" if bits else "u16")
    if type_ is not None and (type_ == "bit") != bits:
        want = "bit" if bits else "u16 or u32"
        s.checker.error(s.path / "type", f"{type_!r}: function {function} needs {want}")
    top = {"u16": 15, "u32": 31}.get(type_, 1999)
    byte_order, word_order = orders_of(s, orders)
    flags = list_items(s, "bits", lambda b: _flag(b, top))
    if "bits" not in s.data:
        s.checker.error(s.path / "bits", "is required")
    elif not flags:
        s.checker.error(s.path / "bits", "lists no bits")
    seen: dict[int, int] = {}
    for i, flag in enumerate(flags):
        if flag is not None and flag.bit in seen:
            s.checker.error(s.path / "bits" / i / "bit",
                            f"bit {flag.bit} is already bits[{seen[flag.bit]}]")
        elif flag is not None:
            seen[flag.bit] = i
    s.finish(allowed_extra=("name", "comment"))
    if None in flags:  # already reported; a word with holes would only add noise below
        return None
    return StatusWord(function, address, type_, tuple(flags), byte_order, word_order)


def _flag(s: Section, top: int) -> StatusBit | None:
    bit = s.get("bit", integer(0, top))
    kind = s.get("kind", choice("alarm", "fault"))
    code = s.get("code", string(_CODE, "a code in snake_case (temperature, channel_open)"))
    ch = s.get("channel", channel, "")
    levels = ("warning", "alarm") if kind == "alarm" else ("fault",)
    level = s.get("level", choice(*levels), levels[-1])
    default_quality = "bad" if code in _OPEN_SHORT and ch else None
    quality = s.get("quality", choice("bad", "uncertain"), default_quality)
    message = s.get("message", string(), "")
    s.finish(allowed_extra=("comment",))
    if None in (bit, kind, code, ch, level):
        return None
    return StatusBit(bit, EventKind(kind), code, ch, Level(level),
                     Quality(quality) if quality else None, message)


def _no_duplicates(checker: Checker, path: Path, points: list[Point | None]) -> None:
    # Two points with one (quantity, channel) would give two readings per poll for one series.
    seen: dict[tuple[str, str], int] = {}
    for i, p in enumerate(points):
        if p is None or p.quantity is None:
            continue
        key = (p.quantity, p.channel)
        if key in seen:
            where = f"/{p.channel}" if p.channel else ""
            checker.error(path / i, f"{p.quantity}{where} is already read by points[{seen[key]}]")
        else:
            seen[key] = i


def _one_flag_per_event(checker: Checker, path: Path, words: list[StatusWord | None]) -> None:
    # The alarm engine tells device reports apart by (kind, code, channel), not by level: two
    # bits with one key would raise and clear each other's event.
    seen: dict[tuple[EventKind, str, str], str] = {}
    for i, word in enumerate(words):
        for j, flag in enumerate(word.bits if word else ()):
            key = (flag.kind, flag.code, flag.channel)
            here = f"status[{i}].bits[{j}]"
            if key in seen:
                where = f"/{flag.channel}" if flag.channel else ""
                checker.error(path / i / "bits" / j, f"{flag.kind} {flag.code}{where} is "
                              f"already reported by {seen[key]} (give the flag its own code)")
            else:
                seen[key] = here
