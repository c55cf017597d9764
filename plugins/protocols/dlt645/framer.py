"""Cutting DL/T 645 frames out of a byte stream: what a DTU forwards, in any pieces.

Unlike Modbus RTU, a DL/T 645 frame delimits itself: ``68``, six address bytes, ``68``,
the control code, the length L, L data bytes, the checksum and ``16``. So the framer needs
no expectation to find a frame, only to say whether a frame answers the request in hand.
It follows h11's contract, like :class:`plugins.protocols.modbus.framer.ResponseFramer`:
:meth:`Dlt645Framer.feed` only buffers, :meth:`Dlt645Framer.next_frame` returns one
result at a time or :data:`NEED_DATA`.

Rules:

* ``FE`` wake-up bytes before a frame are dropped (counted in ``wakeups``); a run of them at
  the end of the buffer waits for the frame it announces.
* Any other byte that cannot start a frame (no ``68``, or no second ``68`` six bytes on) is
  garbage: dropped one at a time and counted (``skipped``).
* **Ignored patterns** (a DTU's heartbeat, its id in front of each packet) are recognised
  at the front of the buffer and dropped whole (``ignored``); a partial one at the end
  waits for more bytes.
* A candidate frame whose L exceeds ``max_data`` (200 by default: the largest data field a
  read reply may carry) is reported as a ``"length"`` :class:`FrameError` without waiting for
  hundreds of bytes; a bad checksum as ``"checksum"``, a missing ``16`` as ``"end"``, a
  non-BCD address as ``"address"``. After each the framer resynchronises one byte on.
* The buffer is bounded: beyond ``max_buffer`` the oldest bytes are dropped (``"overflow"``).

Errors are values, never raised: one bad byte must not cost a DTU its connection. Every
decision depends only on bytes already received, so a stream gives the same results fed
whole or byte by byte.
"""

from __future__ import annotations

from collections.abc import Collection

from plugins.protocols.dlt645.frame import (
    EXCERPT,
    HEADER,
    OFFSET,
    OVERHEAD,
    START,
    AddressError,
    Frame,
    address_matches,
    checksum,
    decode_address,
)
from plugins.protocols.stream import WAIT, BufferedFramer, FrameError

__all__ = ["NEED_DATA", "Dlt645Framer", "FrameError", "scan_frames"]

#: What :meth:`Dlt645Framer.next_frame` returns while no complete frame is buffered (the
#: same sentinel as :data:`hub.testing.NEED_DATA`).
NEED_DATA = None

#: The longest data field of a read reply (the standard limits L to 200 for reads).
MAX_DATA = 200


class Dlt645Framer(BufferedFramer):
    """Finds complete DL/T 645 frames in the bytes received from one connection.

    :param max_buffer: bytes kept at most (at least one longest frame, 12 + ``max_data``).
    :param max_data: the largest L accepted (255 accepts any).
    :param ignore: byte strings dropped whole between frames (heartbeats, an id prefix).

    Counters: ``frames``, ``checksum_errors``, ``skipped`` (garbage bytes), ``wakeups`` (FE
    bytes), ``ignored`` (patterns), ``overflows``.
    """

    def __init__(self, max_buffer: int = 1024, max_data: int = MAX_DATA,
                 ignore: Collection[bytes] = ()) -> None:
        if not 0 <= max_data <= 255:
            raise ValueError(f"max_data {max_data} is outside 0..255 (L is one byte)")
        if max_buffer < OVERHEAD + max_data:
            raise ValueError(f"max_buffer {max_buffer} is shorter than a frame "
                             f"({OVERHEAD + max_data})")
        super().__init__(max_buffer, ignore)
        self.max_data = max_data
        self._expected: tuple[str, int] | None = None
        self.frames = self.checksum_errors = self.skipped = self.wakeups = 0

    @property
    def expected(self) -> tuple[str, int] | None:
        """``(address, function)`` of the awaited reply, or ``None``."""
        return self._expected

    def expect(self, address: str, function: int) -> None:
        """Await the reply to a request just sent to ``address`` (``AA`` bytes match any)
        with function code ``function`` (11H, 12H, 13H, 1CH): the next frame from that
        address with that function, normal or abnormal, is returned with ``solicited``
        set, and the framer stops waiting."""
        self._expected = (address.upper(), function & 0x1F)

    def expect_answer(self, request: bytes, length: int) -> None:
        """:meth:`expect` the reply to ``request`` (its address and function; FE bytes may
        precede it): the :class:`hub.contracts.StreamFramer` contract. ``length`` is not
        needed: a DL/T 645 frame says its own length."""
        i = request.find(START)
        self._expected = (request[i + 1:i + 7][::-1].hex().upper(), request[i + 8] & 0x1F)

    def expect_nothing(self) -> None:
        """Stop waiting (the request timed out): later frames are unsolicited."""
        self._expected = None

    def next_frame(self) -> Frame | FrameError | None:
        """The next :class:`~plugins.protocols.dlt645.frame.Frame` (``data`` without the 33H
        offset), a :class:`FrameError`, or :data:`NEED_DATA`."""
        if self._errors:
            return self._errors.pop(0)
        buf = self._buf
        while buf:
            k = self._ignorable()
            if k == WAIT:
                return NEED_DATA
            if k:
                del buf[:k]
                self.ignored += 1
                continue
            if buf[0] != START:
                if buf[0] == 0xFE:
                    if not buf.lstrip(b"\xfe"):
                        return NEED_DATA  # wake-up bytes: the frame is on its way
                    self.wakeups += 1
                else:
                    self.skipped += 1
                del buf[:1]
                continue
            if len(buf) < HEADER:
                return NEED_DATA
            if buf[7] != START:
                self.skipped += 1
                del buf[:1]
                continue
            length = buf[9]
            if length > self.max_data:
                return self._reject("length")
            n = OVERHEAD + length
            if len(buf) < n:
                return NEED_DATA
            if buf[n - 2] != checksum(buf[:n - 2]):
                self.checksum_errors += 1
                return self._reject("checksum")
            if buf[n - 1] != 0x16:
                return self._reject("end")
            raw = bytes(buf[:n])
            try:
                address = decode_address(raw[1:7], raw)
            except AddressError:
                return self._reject("address")
            del buf[:n]
            self.frames += 1
            control = raw[8]
            solicited = False
            if self._expected is not None and control & 0x80 \
                    and control & 0x1F == self._expected[1] \
                    and address_matches(self._expected[0], address):
                solicited = True
                self._expected = None
            data = bytes((b - OFFSET) & 0xFF for b in raw[HEADER:n - 2])
            return Frame(address, control, data, raw, solicited)
        return NEED_DATA

    def _reject(self, reason: str) -> FrameError:
        # Resynchronise: a frame, if any, starts at one of the following bytes.
        excerpt = bytes(self._buf[:EXCERPT])
        del self._buf[:1]
        return FrameError(reason, excerpt)


def scan_frames(data: bytes) -> list[Frame]:
    """Every valid frame in ``data``, skipping garbage between them (a payload that may
    hold several frames or a prefix the DTU added)."""
    framer = Dlt645Framer(max(OVERHEAD + 255, len(data)), 255)
    framer.feed(data)
    return [f for f in iter(framer.next_frame, NEED_DATA) if isinstance(f, Frame)]
