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


def test_a_plain_block_is_stored_as_the_same_block_not_marked(tmp_path):
    values = [[45.2, 221.3, 10.2], [45.3, 220.0, 10.1]]
    marked, unmarked = _journal(tmp_path, "m"), _journal(tmp_path, "u")
    marked.append([ReadingBlock("d1", T0 + i, KEYS, list(v), True)
                   for i, v in enumerate(values)])
    unmarked.append([ReadingBlock("d1", T0 + i, KEYS, list(v)) for i, v in enumerate(values)])
    assert marked._pending[0].plain and unmarked._pending[0].plain
    marked.flush()
    unmarked.flush()
    assert marked.read_rows(0, 10) == unmarked.read_rows(0, 10)
    assert _bodies(marked) == _bodies(unmarked)
    marked.close()
    unmarked.close()


def test_the_encoder_gives_the_same_segments_plain_or_not():
    devices = {1: 1, 2: 1, 3: 2}
    rows = [(s, 0, 1 + s % 3, T0 + s, 1.5 * s, None, None) for s in range(1, 31)]
    assert segments.encode(rows, 1, devices, plain=True) == segments.encode(rows, 1, devices)
    odd = [*rows[:5], (6, 0, 3, T0, math.inf, None, None)]
    careful = segments.encode(odd, 1, devices)
    assert b"1e999" in careful[0][-1][-1]


# ------------------------------------------------------------------ the mqtt service's routes

MODEL_A = {"type": "json_map", "points": [{"path": "t", "quantity": "temperature",
                                           "channel": "T1"}]}
MODEL_B = {"type": "json_map", "points": [{"path": "t", "quantity": "voltage",
                                           "channel": "A"}]}
MQTT_CONFIG = {
    "models": {"a": MODEL_A, "b": MODEL_B},
    "transports": {"mq": {"type": "mqtt", "host": "127.0.0.1"}},
    "devices": [{"id": "m1", "model": "a", "transport": "mq", "address": "m1"},
                {"id": "m2", "model": "a", "transport": "mq", "address": "m2"}],
}


class _Conn:
    """What MqttService.deliver needs of an engine connection."""

    name, index, link_number = "mq", 0, 0

    def __init__(self) -> None:
        from collections import deque

        self.acks: deque = deque()
        self.acked: list[int] = []

    def finished(self, item) -> None:
        item.done = True
        while self.acks and self.acks[0].done:
            self.acked.append(self.acks.popleft().mid)

    def finished_all(self, items) -> None:
        for item in items:
            self.finished(item)


def _mqtt(make_hub):
    from plugins.transports.mqtt.service import MqttService

    hub = make_hub(MQTT_CONFIG)
    svc = MqttService(hub, "mq", hub.config.transports["mq"].options)
    svc._unwatch = hub.watch_devices("mq", svc.device_changed)
    return hub, svc, _Conn()


def _send(hub, svc, conn, messages: list[tuple[str, bytes]], first_mid: int = 1) -> None:
    from plugins.transports.mqtt.engine import Received

    svc.deliver(conn, [Received(f"esm/{dev}/up", payload, first_mid + i, 1, None)
                       for i, (dev, payload) in enumerate(messages)])
    hub.journal.flush()


def _readings(hub) -> list[tuple[str, str, float]]:
    return [(r.device, r.quantity, r.value) for r in
            (hub.journal.record(row) for row in hub.journal.read_rows(0, 1000))
            if isinstance(r, Reading)]


def test_an_uplink_topic_goes_to_its_device_until_the_devices_change(make_hub):
    from hub.api.live import registry_device
    from hub.store import Device as StoredDevice

    hub, svc, conn = _mqtt(make_hub)
    _send(hub, svc, conn, [("m1", b'{"t": 20.5}'), ("m2", b'{"t": 21.5}'),
                           ("m1", b'{"t": 22.5}'), ("m1", b"not json")])
    assert set(svc._routes) == {"esm/m1/up", "esm/m2/up"}
    assert conn.acked == [1, 2, 3, 4]  # the bad payload too, in order, after the commit
    assert hub.metrics.value("mqtt.messages", transport="mq", kind="uplink") == 4
    assert hub.metrics.value("mqtt.decode_errors", transport="mq", model="a") == 1
    # m1 now speaks model b: its next uplink must be decoded by b, not by a cached a
    hub.registry.replace(registry_device(hub, StoredDevice("m1", "m1", "", "b", "mq", "m1")))
    assert svc._routes == {}
    _send(hub, svc, conn, [("m1", b'{"t": 230.0}'), ("m2", b'{"t": 23.5}')], 5)
    hub.registry.remove("m2")
    _send(hub, svc, conn, [("m2", b'{"t": 24.5}')], 7)
    assert _readings(hub) == [("m1", "temperature", 20.5), ("m2", "temperature", 21.5),
                              ("m1", "temperature", 22.5), ("m1", "voltage", 230.0),
                              ("m2", "temperature", 23.5)]
    assert hub.metrics.value("mqtt.refused", transport="mq") == 1  # m2's, after its removal
    assert conn.acked == list(range(1, 8))
    assert svc.clients["m1"][0] == hub.clock.seconds()


def test_a_bug_in_a_routed_decode_costs_one_message(make_hub):
    hub, svc, conn = _mqtt(make_hub)
    _send(hub, svc, conn, [("m1", b'{"t": 20.5}')])
    device_id, _, device = svc._routes["esm/m1/up"]

    def broken(*_):
        raise RuntimeError("a model bug")

    svc._routes["esm/m1/up"] = (device_id, broken, device)
    _send(hub, svc, conn, [("m1", b'{"t": 1.0}'), ("m2", b'{"t": 2.0}')], 2)
    assert _readings(hub) == [("m1", "temperature", 20.5), ("m2", "temperature", 2.0)]
    assert hub.metrics.value("mqtt.internal_errors", transport="mq") == 1
    assert conn.acked == [1, 2, 3]


def test_json_map_marks_its_blocks_plain_and_a_made_block_is_not():
    from hub.config import check_config
    from hub.pluginmanager import make_plugins

    plugins = make_plugins()
    cfg = check_config({"hub": {"state_dir": "/tmp/unused"}, "models": {"a": MODEL_A}},
                       "hub.yaml", plugins)
    m = plugins.models["json_map"].factory(cfg.models["a"].options)
    for raw in (b'{"t": 20.5}', b'{"t": 20}'):
        block = m.decode_block("d1", raw, T0)
        assert type(block) is ReadingBlock and block.plain and block.values == [float(
            raw[6:-1])]
    assert type(m.decode_block("d1", b'{"t": "20"}', T0)) is list
    assert not ReadingBlock("d1", T0, KEYS, [1.0, 2.0, 3.0]).plain


# --------------------------------------------------------------------------- the mqtt codec

def test_pubacks_back_to_back_are_the_single_pubacks_joined():
    from plugins.transports.mqtt import codec

    ids = [1, 2, 0x1234, 0xFFFF, 300]
    assert codec.encode_pubacks(ids) == b"".join(codec.encode_puback(i) for i in ids)
    assert codec.encode_pubacks([]) == b""
    for bad in ([0], [1, 0x10000], [-1]):
        with pytest.raises(ValueError):
            codec.encode_pubacks(bad)
    # and the decoder reads them back as the same acks, in order
    packets = codec.Decoder(v5=True).feed(codec.encode_pubacks(ids))
    assert [p.packet_id for p in packets] == ids


def test_a_decoder_makes_its_publishes_with_the_given_maker():
    from plugins.transports.mqtt import codec

    raw = (codec.encode_publish("esm/d1/up", b'{"t": 1}', qos=1, packet_id=7, v5=True)
           + codec.encode_publish("esm/d2/up", b"x", qos=0, packet_id=None, v5=True,
                                  correlation=b"c1", response_topic="r"))
    made = codec.Decoder(True, publish=lambda *fields: ("made", fields)).feed(raw)
    plain = codec.Decoder(True).feed(raw)
    assert [type(p) for p in plain] == [codec.Publish, codec.Publish]
    assert made == [("made", (p.topic, p.payload, p.qos, p.packet_id, p.retain, p.dup,
                              p.correlation, p.response_topic, p.raw_topic)) for p in plain]
    assert plain[1].correlation == b"c1" and plain[0].packet_id == 7


def test_json_map_blocks_of_partial_messages_give_what_decode_gives():
    from hub.config import check_config
    from hub.pluginmanager import make_plugins

    mapping = {"type": "json_map", "timestamp": {"path": "ts", "format": "epoch_ms"},
               "points": [{"path": "t", "quantity": "temperature", "channel": "T1"},
                          {"path": "u", "quantity": "voltage", "channel": "A"},
                          {"path": "i", "quantity": "current", "channel": "A"}]}
    plugins = make_plugins()
    cfg = check_config({"hub": {"state_dir": "/tmp/unused"}, "models": {"m": mapping}},
                       "hub.yaml", plugins)
    m = plugins.models["json_map"].factory(cfg.models["m"].options)
    for raw in (b'{"ts": 1767225600500, "t": 20.5, "u": 230, "i": 1.5}',
                b'{"ts": 1767225600500, "t": 20.5, "i": 1.5}',  # "u" absent
                b'{"ts": 1767225600500, "t": null, "u": 230.5, "i": 1.5}',
                b'{"u": 230.5}'):
        block = m.decode_block("d1", raw, T0)
        assert type(block) is ReadingBlock and block.plain
        assert list(block) == m.decode("d1", raw, T0)
