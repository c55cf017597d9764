"""Journal records as InfluxDB line protocol: pure, deterministic, escaped per the spec.

Nothing here does I/O or reads a clock, so the same record always gives the same bytes:
that is what makes re-delivery after a crash harmless (InfluxDB keeps one value per series
and timestamp; a second write of an identical point replaces it with itself).

Layout (documented for users in the README section "InfluxDB sink")::

    temperature,channel=T1,device=efd-1,model=efd,project=campus-a value=25.3 1767225600123000000
    events,channel=T1,code=temperature,device=efd-1,kind=alarm,level=alarm,model=efd,\
project=campus-a,source=hub,state=raised id="9f3c…",message="…",value=91.5,set_point=80 …
    command_results,device=efd-1,model=efd,project=campus-a,status=succeeded \
command_id="c-17",detail="",ok=1i …

* Readings: one measurement per quantity by default (the template ``{quantity}``); a
  template without ``{quantity}`` (say ``reading``) puts every quantity in one measurement
  and adds the tag ``quantity``. Field ``value`` (float, the quantity's canonical unit);
  ``quality="uncertain"|"bad"`` is added only when the reading is not good.
* Tags: ``device``, ``channel``, and the device's ``model`` and ``project`` from the
  configuration (omitted when empty: line protocol has no empty tag values). Tag keys are
  written sorted, as InfluxDB recommends. Events of the hub itself (device ``hub``) also
  carry their id as the tag ``event_id``, so two of them at the same instant (two sinks
  lagging) stay two points.
* Timestamps: ``round(ts * 1e6) * 1000`` nanoseconds. A float epoch time carries about
  0.24 µs of resolution today, so anything finer is noise; rounding to the microsecond first
  gives the instant the device meant (a millisecond timestamp stays on its millisecond, where
  ``int(ts * 1e9)`` could land one nanosecond before it) and is the same on every run.

Escaping (InfluxDB line protocol reference): measurements escape comma and space; tag keys,
tag values and field keys escape comma, equals sign and space; string field values escape
backslash and double quote. A backslash in a name or tag is doubled (two contiguous
backslashes read back as one), so a tag value ending in a backslash cannot swallow the
comma after it. Line protocol cannot carry a newline anywhere, so a newline or
carriage return in a string becomes the two characters ``\\n`` / ``\\r`` (and a space in
names and tags).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Container, Iterable, Sequence

from hub.journal import JournalClosedError
from hub.model import CommandResult, CommandStatus, Event, Quality, Reading

__all__ = [
    "UNREADABLE",
    "EncodeError",
    "LineEncoder",
    "escape_measurement",
    "escape_string",
    "escape_tag",
    "format_float",
    "timestamp_ns",
]

#: Tags of a device from the configuration, as sorted ``(key, value)`` pairs.
DeviceTags = Callable[[str], Sequence[tuple[str, str]]]

_MEASUREMENT = str.maketrans({"\\": "\\\\", ",": r"\,", " ": r"\ ", "\n": " ", "\r": " "})
_TAG = str.maketrans({"\\": "\\\\", ",": r"\,", "=": r"\=", " ": r"\ ", "\n": " ",
                      "\r": " "})
_STRING = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})

#: Series prefixes kept per encoder before the cache starts over (bounds memory).
MAX_CACHED_SERIES = 500_000
#: Texts of float values kept per encoder before that cache starts over.
MAX_CACHED_VALUES = 16_384
#: A batch of readings that missed the value cache more often than it hit turns the cache
#: off for this many batches (values of full double precision never repeat, and filling a
#: dict with them cost more than the dtoa it saves), then it is tried again.
VALUE_CACHE_REST = 32

#: The device name of the hub's own events (sink lag, broker link, journal space).
HUB_DEVICE = "hub"

#: How :meth:`LineEncoder.encode_rows` starts the reason of a row it could not turn back
#: into a record (corrupt JSON, an enum value this version does not know after a
#: downgrade, a series id with no name).
UNREADABLE = "unreadable journal row"
#: Failures of the machine, not of the row: reading the row again later may succeed, so
#: they propagate (the sink reads again from its cursor) instead of condemning the row.
_LOCAL_ERRORS = (sqlite3.Error, OSError, MemoryError, JournalClosedError)


class EncodeError(ValueError):
    """A record cannot be written as line protocol (a value that is not finite)."""


def escape_measurement(name: str) -> str:
    return name.translate(_MEASUREMENT)


def escape_tag(text: str) -> str:
    """A tag key, tag value or field key."""
    return text.translate(_TAG)


def escape_string(text: str) -> str:
    """A string field value, without the surrounding double quotes."""
    return text.translate(_STRING)


def timestamp_ns(ts: float) -> int:
    """The canonical timestamp in nanoseconds: rounded to the microsecond (see above)."""
    return round(ts * 1_000_000) * 1000


def format_float(value: float) -> str:
    """A float field value: the shortest text that reads back as the same double."""
    v = float(value)
    if v - v != 0.0:  # inf - inf and nan - nan are nan
        raise EncodeError(f"value {v!r} is not finite; line protocol cannot carry it")
    return repr(v)


def _tags(pairs: Iterable[tuple[str, str]]) -> str:
    return "".join(f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(pairs) if v != "")


class LineEncoder:
    """Turns journal records into lines. ``device_tags(device)`` gives the configured tags
    of a device (``model``, ``project``); it is asked once per series and cached."""

    def __init__(
        self,
        device_tags: DeviceTags = lambda device: (),
        *,
        readings: str = "{quantity}",
        events: str = "events",
        results: str = "command_results",
    ) -> None:
        self._device_tags = device_tags
        self._readings = readings
        self._per_quantity = "{quantity}" in readings
        self._events = escape_measurement(events)
        self._results = escape_measurement(results)
        # (device, channel, quantity) -> "measurement,tags value="
        self._prefix: dict[tuple[str, str, str], str] = {}
        self._sid_prefix: dict[int, str] = {}  # journal series id -> the same prefix
        # finite non-zero float -> its repr: the shortest round-trip text costs a dtoa
        # (~0.15-0.25 µs, the dearest step of a line) and a detector's values repeat (one
        # or two decimals in a narrow range), so most are a dict hit
        self._value_text: dict[float, str] = {}
        self._value_rest = 0  # batches left before the value cache is tried again

    def measurement(self, quantity: str) -> str:
        return self._readings.format(quantity=quantity)

    def _reading_prefix(self, device: str, channel: str, quantity: str) -> str:
        key = (device, channel, quantity)
        prefix = self._prefix.get(key)
        if prefix is None:
            tags = [("device", device), ("channel", channel), *self._device_tags(device)]
            if not self._per_quantity:
                tags.append(("quantity", quantity))
            prefix = f"{escape_measurement(self.measurement(quantity))}{_tags(tags)} value="
            if len(self._prefix) >= MAX_CACHED_SERIES:
                self._prefix.clear()
            self._prefix[key] = prefix
        return prefix

    def reading(self, r: Reading) -> str:
        prefix = self._reading_prefix(r.device, r.channel, r.quantity)
        v = r.value
        text = repr(v) if type(v) is float and v - v == 0.0 else format_float(v)
        if r.quality is Quality.GOOD:
            return f"{prefix}{text} {round(r.ts * 1_000_000) * 1000}"
        q = Quality(r.quality).value
        return f'{prefix}{text},quality="{q}" {round(r.ts * 1_000_000) * 1000}'

    def event(self, e: Event) -> str:
        tags = [("device", e.device), ("channel", e.channel), ("kind", e.kind.value),
                ("code", e.code), ("level", e.level.value), ("state", e.state.value),
                ("source", e.source), *self._device_tags(e.device)]
        if e.device == HUB_DEVICE:
            # What tells the hub's own events apart (which sink lags, which broker link or
            # SMS recipient failed) is only in their id: without it two of them at the same
            # microsecond would be one point. A device's event id derives from its tags and
            # raise time, so device events need no such tag (and get none: a tag per
            # occurrence is a series per occurrence).
            tags.append(("event_id", e.id))
        fields = [f'id="{escape_string(e.id)}"', f'message="{escape_string(e.message)}"']
        duration = e.duration
        for name, v in (("value", e.value), ("set_point", e.set_point), ("peak", e.peak),
                        ("duration", duration)):
            # an alarm must not be refused for a non-finite extra: those fields are left out
            if v is not None and not isinstance(v, bool) and math.isfinite(v):
                fields.append(f"{name}={float(v)!r}")
        return f"{self._events}{_tags(tags)} {','.join(fields)} {timestamp_ns(e.ts)}"

    def result(self, r: CommandResult) -> str:
        status = CommandStatus(r.status)
        tags = [("device", r.device), ("status", status.value), *self._device_tags(r.device)]
        ok = "1i" if status is CommandStatus.SUCCEEDED else "0i"
        fields = (f'command_id="{escape_string(r.command_id)}",'
                  f'detail="{escape_string(r.detail)}",ok={ok}')
        return f"{self._results}{_tags(tags)} {fields} {timestamp_ns(r.ts)}"

    def encode_rows(
        self,
        rows: Sequence[tuple],
        series_key: Callable[[int], tuple[str, str, str]],
        record: Callable[[tuple], object],
        kinds: Container[int] | None = None,
    ) -> tuple[list[str], list[int], list[tuple[int, str, str]]]:
        """:meth:`encode` for journal rows as stored (:meth:`hub.journal.Journal.read_rows`):
        ``(seq, kind, series, ts, value, quality, data)``. A reading is encoded from its row
        with a line prefix cached per series id (no :class:`Reading` is built), which is
        what lets one process write well over 100,000 points a second; other kinds go
        through ``record(row)`` and :meth:`encode`.

        A row that cannot be read back (``record`` or ``series_key`` raises) comes back in
        ``failed`` as ``(seq, repr of the row, "unreadable journal row: ...")``: one corrupt
        row must not stop the rows after it. With ``kinds`` (codes of
        :data:`hub.journal.KINDS`), rows of other kinds are passed over unread."""
        lines: list[str] = []
        seqs: list[int] = []
        failed: list[tuple[int, str, str]] = []
        add_line, add_seq = lines.append, seqs.append
        prefixes = self._sid_prefix
        caching = self._value_rest == 0
        if caching:
            texts = self._value_text
        else:
            texts = {}
            self._value_rest -= 1
        misses = 0
        # a message's readings share their ts: its text is made once per run of equal ts
        last_ts, stamp = None, ""
        for row in rows:
            seq, kind, sid, ts, value, quality, _ = row
            if kind == 0:
                prefix = prefixes.get(sid)
                if prefix is None:
                    try:
                        prefix = self._series_prefix(sid, series_key)
                    except _LOCAL_ERRORS:
                        raise
                    except Exception as e:
                        failed.append(_unreadable(row, e))
                        continue
                text = texts.get(value) if type(value) is float else None
                if text is None:
                    misses += 1
                    if type(value) is float and value - value == 0.0:
                        text = repr(value)
                        # zero is left out: -0.0 == 0.0 as keys, not as text
                        if caching and value:
                            if len(texts) >= MAX_CACHED_VALUES:
                                texts.clear()
                            texts[value] = text
                    else:
                        try:
                            text = format_float(value)
                        except (EncodeError, ValueError, TypeError) as e:
                            failed.append((seq, _record_text(row, record), str(e)))
                            continue
                if ts != last_ts:
                    last_ts, stamp = ts, f" {round(ts * 1_000_000) * 1000}"
                if quality is None:
                    add_line(f"{prefix}{text}{stamp}")
                else:
                    add_line(f'{prefix}{text},quality="{escape_string(quality)}"{stamp}')
                add_seq(seq)
            elif kinds is not None and kind not in kinds:
                continue
            else:
                try:
                    rec = record(row)
                except _LOCAL_ERRORS:
                    raise
                except Exception as e:
                    failed.append(_unreadable(row, e))
                    continue
                more, more_seqs, more_failed = self.encode([(seq, rec)])
                lines += more
                seqs += more_seqs
                failed += more_failed
        if caching and misses * 2 > len(lines) >= 256:
            self._value_rest = VALUE_CACHE_REST
            texts.clear()
        return lines, seqs, failed

    def _series_prefix(self, sid: int, series_key: Callable[[int], tuple[str, str, str]]) -> str:
        device, channel, quantity = series_key(sid)
        prefix = self._reading_prefix(device, channel, quantity)
        if len(self._sid_prefix) >= MAX_CACHED_SERIES:
            self._sid_prefix.clear()
        self._sid_prefix[sid] = prefix
        return prefix

    def encode(
        self, rows: Sequence[tuple[int, object]]
    ) -> tuple[list[str], list[int], list[tuple[int, str, str]]]:
        """Lines for ``(seq, record)`` rows: ``(lines, seqs, failed)``.

        ``seqs[i]`` is the journal seq of ``lines[i]``. Records that cannot be encoded come
        back in ``failed`` as ``(seq, repr of the record, reason)``; records of other types
        (commands) are skipped.
        """
        lines: list[str] = []
        seqs: list[int] = []
        failed: list[tuple[int, str, str]] = []
        add_line, add_seq = lines.append, seqs.append
        reading, event, result = self.reading, self.event, self.result
        for seq, rec in rows:
            t = type(rec)
            try:
                if t is Reading:
                    add_line(reading(rec))
                elif t is Event:
                    add_line(event(rec))
                elif t is CommandResult:
                    add_line(result(rec))
                else:
                    continue
            except (EncodeError, ValueError, TypeError) as e:
                failed.append((seq, repr(rec), str(e)))
                continue
            add_seq(seq)
        return lines, seqs, failed


def _unreadable(row: tuple, error: Exception) -> tuple[int, str, str]:
    return row[0], repr(row), f"{UNREADABLE}: {type(error).__name__}: {error}"


def _record_text(row: tuple, record: Callable[[tuple], object]) -> str:
    """The record of a row that cannot be encoded, as text for the dead-letter table; the
    row itself when even the record cannot be rebuilt."""
    try:
        return repr(record(row))
    except _LOCAL_ERRORS:
        raise
    except Exception:
        return repr(row)
