"""ReadingBlock, the compact readings of one message (hub.blocks): the json_map model's
``decode_block`` gives the records ``decode`` gives, and the hub journals, checks and
alarms on them exactly as on the same Readings."""

from __future__ import annotations

import json
import math

import pytest

from hub.blocks import BlockKeys, ReadingBlock
from hub.config import check_config
from hub.model import Reading
from hub.pluginmanager import make_plugins

T0 = 1_767_225_600.0

POINTS = {"i0": ("residual_current", ""), "t1": ("temperature", "T1"),
          "ua": ("voltage", "A"), "ia": ("current", "A"), "pf": ("power_factor", "")}

MAPPING = {"type": "json_map", "timestamp": {"path": "ts", "format": "epoch_ms"},
           "points": [{"path": k, "quantity": q, **({"channel": c} if c else {})}
                      for k, (q, c) in POINTS.items()]}


def model(mapping=None):
    plugins = make_plugins()
    cfg = check_config({"hub": {"state_dir": "/tmp/unused"}, "models": {"m": mapping or MAPPING}},
                       "hub.yaml", plugins)
    section = cfg.models["m"]
    return plugins.models[section.type].factory(section.options)


def payload(**doc) -> bytes:
    return json.dumps(doc).encode()


FULL = dict(ts=1_767_225_600_500, seq=7, i0=31.5, t1=45.2, ua=221.3, ia=10.2, pf=0.93)


def test_a_block_is_a_sequence_of_equal_readings():
    keys = BlockKeys([("temperature", "T1"), ("voltage", "A")])
    block = ReadingBlock("d1", T0, keys, [45.2, 221.3])
    expected = [Reading("d1", "temperature", 45.2, T0, "T1"),
                Reading("d1", "voltage", 221.3, T0, "A")]
    assert list(block) == expected and block == expected
    assert len(block) == 2 and block[1] == expected[1] and block[-1] == expected[1]
    assert block[0:1] == expected[:1]
    with pytest.raises(IndexError):
        block[2]
    assert block.readings(frozenset({"voltage"})) == expected[1:]
    assert block == ReadingBlock("d1", T0, BlockKeys(keys.pairs), [45.2, 221.3])
    assert block != ReadingBlock("d1", T0, keys, [45.2, 221.4])
    with pytest.raises(ValueError):
        ReadingBlock("d1", T0, keys, [1.0])


@pytest.mark.parametrize("doc", [
    FULL,
    {**FULL, "t1": None, "pf": None},  # a partial message
    {**FULL, "ua": 221, "ia": 0},  # integers
    {k: v for k, v in FULL.items() if k != "ts"},  # no time: the receipt time
])
def test_decode_block_gives_what_decode_gives(doc):
    m = model()
    raw = payload(**doc)
    block = m.decode_block("d1", raw, T0)
    assert type(block) is ReadingBlock
    assert list(block) == m.decode("d1", raw, T0)
    assert all(type(v) is float for v in block.values)
    if doc is FULL:
        assert block.keys is m.decode_block("d1", raw, T0).keys  # made once per model


@pytest.mark.parametrize("doc", [
    {**FULL, "t1": "45.2"},  # a quoted number
    {**FULL, "t1": True},
    {"ts": FULL["ts"]},  # nothing to read
])
def test_decode_block_leaves_what_is_not_plain_to_decode(doc):
    m = model()
    raw = payload(**doc)
    out = m.decode_block("d1", raw, T0)
    assert type(out) is list and out == m.decode("d1", raw, T0)


def test_decode_block_errors_as_decode_does():
    from hub.contracts import DecodeError

    m = model()
    for raw in (b"{not json", payload(**{**FULL, "t1": "hot"}), payload(**{**FULL, "ts": "x"}),
                b'{"ts": 1, "t1": 1e999}'):
        with pytest.raises(DecodeError):
            m.decode("d1", raw, T0)
        with pytest.raises(DecodeError):
            m.decode_block("d1", raw, T0)


def test_flags_batches_and_scaled_points_take_the_general_path():
    flagged = model({**MAPPING, "alarms": [{"path": "alarm", "code": "temperature"}],
                     "faults": [{"path": "f.t1", "code": "channel_open", "channel": "T1"}]})
    raw = payload(**FULL)
    assert type(flagged.decode_block("d1", raw, T0)) is ReadingBlock  # no flag present
    for doc in ({**FULL, "alarm": 1}, {**FULL, "f": {"t1": 1}}):
        raw = payload(**doc)
        out = flagged.decode_block("d1", raw, T0)
        assert type(out) is list and out == flagged.decode("d1", raw, T0)
    batch = json.dumps([FULL, FULL]).encode()
    assert type(model().decode_block("d1", batch, T0)) is list
    scaled = model({**MAPPING, "points": [{"path": "t1", "quantity": "temperature",
                                           "scale": 0.1}]})
    assert type(scaled.decode_block("d1", raw, T0)) is list


CONFIG = {
    "presence": {"heartbeat_interval": 10, "timeout_count": 3},
    "alarms": {"warning_ratio": 0.9},
    "models": {"m": MAPPING},
    "transports": {"sim": {"type": "simulator", "interval": 3600}},
    "devices": [{"id": "d1", "model": "m", "transport": "sim", "address": "normal"},
                {"id": "d2", "model": "m", "transport": "sim", "address": "silent",
                 "alarms": {"temperature": {"alarm": 80}}}],
}


def _ingest(tmp_path, as_block: bool, docs: list[tuple[str, dict]]):
    from twisted.internet.task import Clock

    from hub.testing import build_hub

    clock = Clock()
    clock.advance(T0)
    hub = build_hub(CONFIG, str(tmp_path / ("block" if as_block else "list")), clock=clock)
    hub.open()
    m = hub.models["m"]
    recorded = []
    for device, doc in docs:
        raw = payload(**doc)
        records = m.decode_block(device, raw, T0) if as_block else m.decode(device, raw, T0)
        assert (type(records) is ReadingBlock) == as_block
        d = hub.ingest(device, records)
        d.addCallback(recorded.append)
        hub.clock.advance(hub.config.journal.commit_interval)
    rows = hub.journal.read_rows(0, 1000)
    events = [(e.device, e.code, e.level.value, e.state.value, e.value)
              for e in (hub.journal.record(r) for r in rows if r[1] != 0)]
    hub.close()
    return hub, recorded, [r for r in rows if r[1] == 0], events


def test_hub_journals_a_block_as_the_same_readings(tmp_path):
    """Rows, seqs, series, alarms (d2 has a set point: raised, then cleared) and the
    readings metric: the same for blocks as for lists of Readings."""
    docs = [("d1", FULL), ("d2", {**FULL, "t1": 85.0}), ("d1", {**FULL, "pf": None}),
            ("d2", {**FULL, "t1": 20.0})]
    hub_b, seqs_b, rows_b, events_b = _ingest(tmp_path, True, docs)
    hub_l, seqs_l, rows_l, events_l = _ingest(tmp_path, False, docs)
    assert rows_b == rows_l and seqs_b == seqs_l and len(rows_b) == 19
    assert events_b == events_l
    assert [e[1:4] for e in events_b] == [("temperature", "alarm", "raised"),
                                          ("temperature", "alarm", "cleared")]
    assert hub_b.metrics.value("ingest.readings") == 19 == hub_l.metrics.value(
        "ingest.readings")


@pytest.mark.parametrize("bad", [
    {"ts": 5_000_000_000_000},  # year 2128: out of the schema's range
])
def test_a_block_that_does_not_fit_is_checked_reading_by_reading(make_hub, bad):
    hub = make_hub(CONFIG)
    raw = payload(**{**FULL, **bad})
    block = hub.models["m"].decode_block("d1", raw, T0)
    assert type(block) is ReadingBlock
    hub.ingest("d1", block)
    hub.clock.advance(hub.config.journal.commit_interval)
    assert hub.journal.read_rows(0, 100) == []
    assert hub.metrics.value("ingest.schema_errors", model="m") == 5


def test_a_block_with_a_non_finite_value_or_a_bad_key_drops_only_those(make_hub):
    hub = make_hub(CONFIG)
    keys = BlockKeys([("temperature", "T1"), ("voltage", "A"), ("no_such_quantity", "")])
    hub.ingest("d1", ReadingBlock("d1", T0, keys, [45.0, math.nan, 1.0]))
    hub.clock.advance(hub.config.journal.commit_interval)
    rows = hub.journal.read_rows(0, 100)
    assert [(r[3], r[4]) for r in rows] == [(T0, 45.0)]
    assert hub.metrics.value("ingest.schema_errors", model="m") == 2


@pytest.mark.parametrize("fmt,ts", [("epoch_s", 1_767_225_600.25), ("epoch_s", 1_767_225_600),
                                    ("epoch_ms", 1_767_225_600_250.0), ("iso8601",
                                                                      "2026-01-01T00:00:00Z")])
def test_block_time_is_decode_time(fmt, ts):
    m = model({**MAPPING, "timestamp": {"path": "ts", "format": fmt}})
    raw = payload(**{**FULL, "ts": ts})
    block = m.decode_block("d1", raw, T0)
    assert type(block) is ReadingBlock and list(block) == m.decode("d1", raw, T0)
    assert type(block.ts) is float
