"""Interop: the hub's DL/T 645 codec and model against the ``dlt645`` package from PyPI
(3.2.0), an implementation nobody here wrote.

It plays a meter (``MeterServerService.handle_request``: a parsed request in, a reply frame
out, no socket needed) and has its own frame encoder and stream decoder, so the hub's
requests go to its meter, its replies come back through the hub's model, and each side
parses the other's frames.

Not cross-checked: broadcast time sync. ``dlt645`` reads the 08H data field in natural
order (YY first); the hub sends it low byte first (ss first) like every other multi-byte
field of the standard, as the C implementation bobyuxinyang/dlt645_2007 also decodes it
(``d07_bcd2str`` reads the last byte first).
"""

from __future__ import annotations

import pytest
import yaml

from hub.model import Reading
from hub.validate import Checker
from plugins.devices.dlt645 import Dlt645Model
from plugins.devices.dlt645.datamap import check_map
from plugins.protocols.dlt645 import (
    MeterError,
    encode_frame,
    encode_value,
    parse_format,
    parse_frame,
    read_request,
)
from plugins.protocols.dlt645.meter import reply

dlt645 = pytest.importorskip("dlt645")
from dlt645.protocol.protocol import DLT645Protocol  # noqa: E402
from dlt645.service.serversvc.server_service import MeterServerService  # noqa: E402

from tests.support.dlt645 import MAP, fill  # noqa: E402

METER = "000000000161"
TS = 1_767_225_600.0


class _NoServer:
    service = None


@pytest.fixture
def their_meter() -> MeterServerService:
    return fill(MeterServerService.new_meter_server_service(_NoServer()))


def ask(meter: MeterServerService, request: bytes) -> bytes:
    remaining, frame = DLT645Protocol.deserialize_with_remaining(request)
    assert frame is not None and remaining == b""
    return bytes(meter.handle_request(frame))


def test_the_hub_polls_their_meter_to_canonical_readings(their_meter):
    model = Dlt645Model(check_map(yaml.safe_load(MAP), "interop.yaml", Checker()))
    got = {}
    for poll in model.plan():
        answer = ask(their_meter, model.request(METER, poll))
        for r in model.decode_response("m1", METER, poll, answer, TS):
            got[(r.quantity, r.channel)] = r.value
    assert got == {
        ("active_energy", ""): 12345.67, ("voltage", "A"): 231.4, ("current", "A"): -5.123,
        ("active_power", ""): -1234.5, ("reactive_power", ""): 500.0,
        ("power_factor", ""): -0.5, ("frequency", ""): 49.98, ("active_demand", ""): 3250.0,
    }


def test_their_meter_error_reply_is_a_meter_error(their_meter):
    model = Dlt645Model(check_map(yaml.safe_load(
        'points: [{quantity: voltage, di: "02FF0000", format: XXX.X}]'), "m.yaml", Checker()))
    answer = ask(their_meter, model.request(METER, model.plan()[0]))
    assert parse_frame(answer).control == 0xD1
    with pytest.raises(MeterError, match="no requested data"):
        model.decode_response("m1", METER, model.plan()[0], answer, TS)
    # and a meter of another address does not take the hub's request as its own
    other = ask(their_meter, read_request("000000000162", 0x02010100))
    assert parse_frame(other).control & 0xC0 == 0xC0


@pytest.mark.parametrize("control, data", [
    (0x11, bytes.fromhex("00 01 01 02")),
    (0x91, bytes.fromhex("00 01 01 02 14 23")),
    (0xD1, bytes([0x02])),
    (0x9C, b""),
    (0x13, b""),
])
def test_frames_are_the_same_bytes_from_both_encoders(control, data):
    theirs = bytes(DLT645Protocol.build_frame(bytes.fromhex("61 01 00 00 00 00"), control,
                                              data))
    assert encode_frame(METER, control, data) == theirs
    parsed = parse_frame(theirs)
    assert (parsed.address, parsed.control, parsed.data) == (METER, control, data)


def test_their_stream_decoder_reads_the_hub_meter_replies():
    values = {0x02010100: encode_value(231.4, parse_format("XXX.X"))}
    answer = reply(read_request(METER, 0x02010100), METER, values, wakeup=4)
    remaining, frame = DLT645Protocol.deserialize_with_remaining(b"\x00\x13" + answer + b"\x68")
    assert frame.ctrl_code == 0x91 and bytes(frame.data) == bytes.fromhex("00 01 01 02 14 23")
    assert bytes(frame.addr) == bytes.fromhex("61 01 00 00 00 00") and remaining == b"\x68"
    assert Reading("m1", "voltage", 231.4, TS, "A").validate()
