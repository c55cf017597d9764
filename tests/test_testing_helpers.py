"""hub.testing, the harness vendors test their models with, and the structured logs."""

from __future__ import annotations

import io
import json

import pytest
from twisted.logger import Logger

from hub.logs import make_observer
from hub.model import Reading
from hub.testing import check_decode, check_stream
from plugins.simulators.demo import SimulatedModel


class LengthPrefixed:
    """A stream decoder: one length byte, then that many payload bytes."""

    def __init__(self, greedy: bool = False):
        self.buffered = bytearray()
        self.greedy = greedy  # a bug: swallows whatever follows a frame

    def feed(self, data: bytes) -> None:
        self.buffered += data

    def next_frame(self):
        if not self.buffered or len(self.buffered) < 1 + self.buffered[0]:
            return None
        n = self.buffered[0]
        frame = bytes(self.buffered[1:1 + n])
        del self.buffered[:len(self.buffered) if self.greedy else 1 + n]
        return frame


def test_check_stream_accepts_a_correct_decoder():
    """Whole, byte by byte and with trailing bytes, a correct decoder gives the same frames."""
    check_stream(LengthPrefixed, b"\x02ab\x01c", [b"ab", b"c"], trailing=b"\x05xy")


def test_check_stream_catches_a_decoder_that_eats_the_next_frame():
    """Trailing bytes must stay in the buffer; a greedy decoder fails the harness."""
    with pytest.raises(AssertionError, match="not left in the buffer"):
        check_stream(lambda: LengthPrefixed(greedy=True), b"\x02ab", [b"ab"],
                     trailing=b"\x05xy")


def test_check_decode_compares_and_validates():
    """check_decode passes on the expected records and fails on a mismatch."""
    frame = b"temperature/T1=25.50;voltage/A=220"
    expected = [Reading("d", "temperature", 25.5, 5.0, "T1"),
                Reading("d", "voltage", 220.0, 5.0, "A")]
    check_decode(SimulatedModel(), "d", frame, expected, received_at=5.0)
    with pytest.raises(AssertionError):
        check_decode(SimulatedModel(), "d", frame, expected[:1], received_at=5.0)


def test_json_logs_carry_the_device_as_a_field():
    """With log_format json, each log line is a JSON object whose fields include the device."""
    out = io.StringIO()
    log = Logger(namespace="hub.test", observer=make_observer("info", "json", out))
    log.warn("device {device} offline", device="efd-7")
    log.debug("hidden {device}", device="efd-8")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    mine = [e for e in lines if e.get("log_namespace") == "hub.test"]
    assert [e["device"] for e in mine] == ["efd-7"]
    assert mine[0]["log_level"]["name"] == "warn"
