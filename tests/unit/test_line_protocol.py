"""The line-protocol encoder: exact lines, escaping, deterministic timestamps."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest
from twisted.internet.task import Clock

from hub.journal import Journal, JournalClosedError
from hub.model import (
    Command,
    CommandResult,
    CommandStatus,
    Event,
    EventKind,
    EventState,
    Level,
    Quality,
    Reading,
)
from plugins.sinks.line_protocol import (
    EncodeError,
    LineEncoder,
    escape_measurement,
    escape_string,
    escape_tag,
    format_float,
    timestamp_ns,
)

T = 1_767_225_600.123  # 2026-01-01T00:00:00.123Z


def tags(device):
    return {"efd-1": (("model", "efd"), ("project", "campus-a"))}.get(device, ())


def test_reading_line_is_exact():
    enc = LineEncoder(tags)
    assert enc.reading(Reading("efd-1", "temperature", 25.3, T, "T1")) == (
        "temperature,channel=T1,device=efd-1,model=efd,project=campus-a value=25.3 "
        "1767225600123000000")


def test_quality_is_a_field_only_when_not_good_and_empty_tags_are_left_out():
    enc = LineEncoder()
    assert enc.reading(Reading("d", "outage", 1, T, "", Quality.BAD)) == (
        'outage,device=d value=1.0,quality="bad" 1767225600123000000')
    assert enc.reading(Reading("d", "voltage", 220.0, T, "A", Quality.UNCERTAIN)).endswith(
        'value=220.0,quality="uncertain" 1767225600123000000')


def test_one_measurement_for_every_quantity_adds_a_quantity_tag():
    enc = LineEncoder(tags, readings="reading")
    assert enc.reading(Reading("efd-1", "voltage", 221.5, T, "B")) == (
        "reading,channel=B,device=efd-1,model=efd,project=campus-a,quantity=voltage "
        "value=221.5 1767225600123000000")
    prefixed = LineEncoder(readings="efd_{quantity}")
    assert prefixed.reading(Reading("d", "voltage", 1.0, T, "B")).startswith(
        "efd_voltage,channel=B,device=d value=")


def test_timestamps_are_deterministic_and_keep_the_millisecond():
    # int(ts * 1e9) would land a nanosecond-ish before the millisecond the device meant
    assert int(T * 1e9) % 1_000_000 != 0
    assert timestamp_ns(T) == 1_767_225_600_123_000_000
    assert timestamp_ns(1_767_225_600.000_001) == 1_767_225_600_000_001_000
    assert timestamp_ns(0.0) == 0
    for i in range(1000):  # every millisecond of a second, through a float round trip
        ts = float(f"1767225600.{i:03d}")
        assert timestamp_ns(ts) == 1_767_225_600_000_000_000 + i * 1_000_000
    assert timestamp_ns(T) == timestamp_ns(float(repr(T)))


def test_escaping_follows_the_line_protocol_spec():
    assert escape_measurement("a b,c=d") == r"a\ b\,c=d"
    assert escape_tag("a b,c=d") == r"a\ b\,c\=d"
    assert escape_tag("ends\\") == "ends\\\\"  # cannot swallow the comma after it
    assert escape_tag("two\nlines") == "two lines"
    assert escape_string('say "hi" \\ now\nplease') == r'say \"hi\" \\ now\nplease'
    enc = LineEncoder(lambda d: (("project", "1号楼 A,B=C"),), events="my events")
    line = enc.reading(Reading("d", "temperature", 30.0, T, "T1"))
    assert line.startswith(r"temperature,channel=T1,device=d,project=1号楼\ A\,B\=C value=30.0")
    ev = enc.event(Event("d", EventKind.STATE, "reset", EventState.NOTICE, T,
                         level=Level.INFO, message='line 1\nline "2"'))
    assert ev.startswith(r"my\ events,code=reset,device=d,kind=state,level=info,project=1号楼\ ")
    assert r'message="line 1\nline \"2\""' in ev
    assert "\n" not in ev


def test_values_that_line_protocol_cannot_carry_are_refused():
    assert format_float(45) == "45.0"
    assert format_float(1e21) == "1e+21"
    assert format_float(-0.1) == "-0.1"
    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(EncodeError, match="not finite"):
            format_float(bad)
    with pytest.raises(EncodeError):
        LineEncoder().reading(Reading("d", "voltage", math.inf, T, "A"))


def test_event_lines_carry_the_alarm_and_its_clear():
    enc = LineEncoder(tags)
    raised = Event("efd-1", EventKind.ALARM, "temperature", EventState.RAISED, T,
                   Level.ALARM, "T1", "9f3c", value=91.5, set_point=80.0, message="温度报警")
    assert enc.event(raised) == (
        "events,channel=T1,code=temperature,device=efd-1,kind=alarm,level=alarm,model=efd,"
        'project=campus-a,source=hub,state=raised id="9f3c",message="温度报警",value=91.5,'
        "set_point=80.0 1767225600123000000")
    cleared = Event("efd-1", EventKind.ALARM, "temperature", EventState.CLEARED, T + 60,
                    Level.ALARM, "T1", "9f3c", value=70.0, set_point=80.0, peak=math.inf,
                    raised_ts=T, source="device")
    line = enc.event(cleared)
    assert "state=cleared" in line and "source=device" in line
    assert "peak" not in line  # a non-finite extra is left out, the event is not refused
    assert ',duration=60.0 1767225660123000000' in line


def test_command_result_lines():
    enc = LineEncoder(tags, results="cmd")
    ok = CommandResult("c-1", "efd-1", CommandStatus.SUCCEEDED, T, "")
    assert enc.result(ok) == ('cmd,device=efd-1,model=efd,project=campus-a,status=succeeded '
                              'command_id="c-1",detail="",ok=1i 1767225600123000000')
    failed = CommandResult("c-2", "x", CommandStatus.TIMED_OUT, T, 'no "answer"')
    assert enc.result(failed) == ('cmd,device=x,status=timed_out command_id="c-2",'
                                  r'detail="no \"answer\"",ok=0i 1767225600123000000')


def test_encode_reports_failures_and_passes_commands_over():
    enc = LineEncoder()
    rows = [(1, Reading("d", "voltage", 1.0, T, "A")),
            (2, Command("c-1", "d", "reset", T)),
            (3, Reading("d", "voltage", math.inf, T, "A")),
            (4, Reading("d", "voltage", 2.0, T + 1, "A"))]
    lines, seqs, failed = enc.encode(rows)
    assert seqs == [1, 4]
    assert len(lines) == 2
    assert [(s, reason) for s, _, reason in failed] == [
        (3, "value inf is not finite; line protocol cannot carry it")]


def test_rows_from_the_journal_encode_exactly_as_their_records(tmp_path):
    """The fast path (rows as stored, prefixes cached per series id) gives the same lines
    as encoding the records :meth:`Journal.read` rebuilds."""
    j = Journal(str(tmp_path / "j.sqlite"), clock=Clock())
    j.open()
    recs = [Reading("efd-1", "temperature", 20.0 + i / 7, T + i, f"T{i % 3 + 1}",
                    Quality.BAD if i == 5 else Quality.GOOD) for i in range(20)]
    recs.append(Event("efd-1", EventKind.FAULT, "offline", EventState.RAISED, T + 30,
                      Level.FAULT, id="abc", message="离线"))
    recs.append(Command("c-9", "efd-1", "reset", T + 31))
    recs.append(CommandResult("c-9", "efd-1", CommandStatus.FAILED, T + 32, "refused"))
    recs.append(Reading("efd-1", "voltage", math.inf, T + 33, "A"))
    j.append(recs)
    j.flush()
    slow = LineEncoder(tags).encode(j.read(0, 1000))
    fast = LineEncoder(tags).encode_rows(j.read_rows(0, 1000), j.series_key, j.record)
    assert fast == slow
    assert len(fast[0]) == 22 and len(fast[2]) == 1
    j.close()


def test_rows_that_cannot_be_read_back_are_reported_and_local_failures_propagate(tmp_path):
    j = Journal(str(tmp_path / "j.sqlite"), clock=Clock())
    j.open()
    j.append([Reading("efd-1", "temperature", 20.0, T, "T1"),
              Event("efd-1", EventKind.FAULT, "offline", EventState.RAISED, T + 1,
                    Level.FAULT, id="abc"),
              Reading("efd-1", "temperature", 21.0, T + 2, "T1")])
    j.flush()
    rows = j.read_rows(0, 10)
    bad_event = (*rows[1][:6], rows[1][6].replace('"kind":"fault"', '"kind":"sparkle"'))
    assert bad_event != rows[1]
    bad_series = (4, 0, 999, T + 3, 1.0, None, None)  # a series id with no name
    lines, seqs, failed = LineEncoder(tags).encode_rows(
        [rows[0], bad_event, bad_series, rows[2]], j.series_key, j.record)
    assert seqs == [1, 3] and len(lines) == 2
    assert [(seq, reason) for seq, _, reason in failed] == [
        (2, "unreadable journal row: ValueError: 'sparkle' is not a valid EventKind"),
        (4, "unreadable journal row: JournalError: record refers to unknown series 999")]
    assert failed[0][1] == repr(bad_event)

    def broken(row):
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError):  # the machine's failure, not the row's
        LineEncoder().encode_rows([rows[1]], j.series_key, broken)
    j.close()
    with pytest.raises(JournalClosedError):
        LineEncoder().encode_rows([bad_series], j.series_key, j.record)


def _reading_rows(values, seq=0):
    """Journal rows of readings of series 1, one per value."""
    return [(seq + i + 1, 0, 1, T + i, v, None, None) for i, v in enumerate(values)]


def _series(sid):
    return ("efd-1", "A", "voltage")


def test_cached_value_texts_are_the_values_own():
    """Repeated values come from the encoder's cache: the same text as without it, and
    0.0 and -0.0 (equal as dict keys) keep their own."""
    values = [220.5, 0.0, -0.0, 220.5, 1e-310, -0.0, 0.0, 1 / 3, 1 / 3, 5e300, 220.5]
    enc = LineEncoder()
    for _ in range(3):  # the second and third pass find every value cached
        lines, seqs, failed = enc.encode_rows(_reading_rows(values), _series, None)
        assert [line.split(" ")[1] for line in lines] == [f"value={v!r}" for v in values]
        assert len(seqs) == len(values) and failed == []
    assert "value=-0.0" in lines[2] and "value=0.0" in lines[1]


def test_values_that_never_repeat_rest_the_cache_and_stay_exact():
    enc = LineEncoder()
    values = [1 + i / 7919 for i in range(1000)]  # full-precision doubles, all different
    lines, _, _ = enc.encode_rows(_reading_rows(values), _series, None)
    assert enc._value_rest > 0 and enc._value_text == {}
    assert [line.split(" ")[1] for line in lines] == [f"value={v!r}" for v in values]
    lines, _, _ = enc.encode_rows(_reading_rows(values[:3] + [math.inf]), _series,
                                  lambda row: row)
    assert len(lines) == 3 and enc._value_text == {}


def test_rows_of_kinds_not_asked_for_are_passed_over_unread():
    rows = [*_reading_rows([1.0]), (2, 2, None, T, None, None, "{not json"),
            *_reading_rows([2.0], seq=2)]

    def record(row):
        raise AssertionError(f"row {row[0]} read")

    lines, seqs, failed = LineEncoder().encode_rows(rows, _series, record, {0, 1, 3})
    assert seqs == [1, 3] and failed == []
    _, _, failed = LineEncoder().encode_rows(rows, _series, lambda row: json.loads(row[6]))
    assert [seq for seq, _, _ in failed] == [2]  # without kinds it was read (and failed)


def test_the_hubs_own_events_are_told_apart_by_their_id():
    enc = LineEncoder(tags)
    first, second = (Event("hub", EventKind.FAULT, "sink_lagging", EventState.RAISED, T,
                           Level.FAULT, id=i) for i in ("a1", "b2"))
    lines = [enc.event(first), enc.event(second)]
    assert lines[0] == ('events,code=sink_lagging,device=hub,event_id=a1,kind=fault,'
                        'level=fault,source=hub,state=raised id="a1",message="" '
                        '1767225600123000000')
    series = {line.split(" ")[0] for line in lines}
    assert len(series) == 2
    notice = Event("hub", EventKind.STATE, "duty_check", EventState.NOTICE, T, Level.INFO)
    assert "event_id" not in enc.event(notice)  # no id: no empty tag
    device = Event("efd-1", EventKind.ALARM, "temperature", EventState.RAISED, T,
                   Level.ALARM, "T1", "9f3c")
    assert "event_id" not in enc.event(device)  # its id derives from its tags already
