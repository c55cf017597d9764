"""The ingest path's shortcuts (issue 15): what they skip must not change what is stored.

A journal append of blocks whose values are all finite floats marks its commit ``plain``,
and the segment encoder then skips its search for values written ``null``; any other value
(None, NaN, an infinity, text) must still take the careful way and read back as before.
"""

from __future__ import annotations

import math
import sqlite3

import pytest
from twisted.internet.task import Clock

from hub.blocks import BlockKeys, ReadingBlock
from hub.journal import Journal, segments
from hub.model import Reading

T0 = 1_767_225_600.0
KEYS = BlockKeys([("temperature", "T1"), ("voltage", "A"), ("current", "A")])


def _journal(tmp_path, name: str) -> Journal:
    j = Journal(str(tmp_path / f"{name}.sqlite"), clock=Clock())
    j.open()
    return j


def _bodies(j: Journal) -> list[bytes]:
    db = sqlite3.connect(j.path)
    try:
        return [bytes(b) if not isinstance(b, str) else b.encode()
                for (b,) in db.execute("SELECT body FROM segments ORDER BY first")]
    finally:
        db.close()


@pytest.mark.parametrize("odd", [None, math.nan, math.inf, -math.inf, 7, "x", 1e308])
def test_blocks_store_what_the_same_readings_store(tmp_path, odd):
    values = [[45.2, 221.3, 10.2], [45.3, odd, 10.1], [1e308, 1e308, 2.5]]
    blocks = [ReadingBlock(f"d{i % 2}", T0 + i, KEYS, list(v)) for i, v in enumerate(values)]
    as_blocks, as_readings = _journal(tmp_path, "b"), _journal(tmp_path, "r")
    as_blocks.append(blocks)
    as_readings.append([r for b in blocks for r in b])
    as_blocks.flush()
    as_readings.flush()
    rows = as_blocks.read_rows(0, 100)
    assert rows == as_readings.read_rows(0, 100) and len(rows) == 9
    assert _bodies(as_blocks) == _bodies(as_readings)
    got = rows[4][4]
    if odd is None or odd != odd:
        assert got is None
    elif odd in (math.inf, -math.inf):
        assert got == odd and b"1e999" in b"".join(_bodies(as_blocks))
    else:
        assert got == (float(odd) if not isinstance(odd, str) else odd)
    as_blocks.close()
    as_readings.close()


def test_a_plain_commit_is_marked_plain_and_one_odd_value_unmarks_it(tmp_path):
    j = _journal(tmp_path, "j")
    j.append([ReadingBlock("d1", T0, KEYS, [1.0, 2.0, 3.0])])
    j.append([Reading("d1", "temperature", 4.0, T0 + 1, "T1")])
    assert all(b.plain for b in j._pending) and j._job(j._pending).plain
    j.append([Reading("d1", "temperature", math.inf, T0 + 2, "T1")])
    assert not j._pending[-1].plain and not j._job(j._pending).plain
    j.flush()
    assert [r[4] for r in j.read_rows(0, 10)] == [1.0, 2.0, 3.0, 4.0, math.inf]
    j.close()


def test_the_encoder_gives_the_same_segments_plain_or_not():
    devices = {1: 1, 2: 1, 3: 2}
    rows = [(s, 0, 1 + s % 3, T0 + s, 1.5 * s, None, None) for s in range(1, 31)]
    assert segments.encode(rows, 1, devices, plain=True) == segments.encode(rows, 1, devices)
    odd = [*rows[:5], (6, 0, 3, T0, math.inf, None, None)]
    careful = segments.encode(odd, 1, devices)
    assert b"1e999" in careful[0][-1][-1]
