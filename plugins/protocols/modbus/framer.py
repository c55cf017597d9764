"""Cutting RTU frames out of a byte stream: the bytes a DTU forwards, in any pieces.

RTU has no delimiter on a TCP stream (the 3.5-character silence of a serial line is lost
in the DTU), so a frame is recognised by what the reader expects and by its CRC. The
framer follows h11's contract: :meth:`ResponseFramer.feed` only buffers,
:meth:`ResponseFramer.next_frame` returns one result at a time or :data:`NEED_DATA`.

Two modes:

* **expecting** (after :meth:`~ResponseFramer.expect`): the answer to the request just
  sent. A frame starts with the expected slave and function (or function | 0x80, a 5-byte
  exception response) and has the expected length; anything else is skipped a byte at a
  time, so heartbeat strings and line noise before the answer do no harm.
* **idle** (nothing expected): frames a pushing detector sends on its own, or an answer
  that arrived after its poll timed out. Their length comes from the frame itself: read
  responses by their byte count, exceptions 5 bytes, write echoes 8.

**Ignored patterns** (a DTU's heartbeat, its id repeated in front of its packets) are
recognised at the front of the buffer wherever the framer would otherwise skip a byte:
dropped whole and counted (``ignored``), not skipped byte by byte as garbage, and a
partial pattern at the end of the buffer waits for more bytes. A valid frame still wins
over a pattern that happens to start it.

Every decision depends only on bytes already received, never on how they were split, so
the same stream gives the same results fed whole or byte by byte. A candidate whose CRC
fails is reported as a :class:`FrameError` value and the framer resynchronises one byte
further on; errors never raise, because one bad byte must not cost a DTU its connection.
"""

from __future__ import annotations

from collections.abc import Collection

from hub.contracts.polled import NEED_DATA, FrameError
from plugins.protocols.modbus.rtu import (
    EXCERPT,
    READS,
    REGISTER_READS,
    WRITES,
    Frame,
    crc_ok,
)
from plugins.protocols.stream import WAIT as _WAIT
from plugins.protocols.stream import BufferedFramer

__all__ = ["NEED_DATA", "FrameError", "ResponseFramer", "scan_frames"]

_SKIP = 0  # the byte at the front cannot start a frame: drop it
_LONGEST = 256  # the longest RTU frame


class ResponseFramer(BufferedFramer):
    """Finds complete RTU frames in the bytes received from one connection (a
    :class:`hub.contracts.StreamFramer`; the buffer, ignored patterns and overflow are
    :class:`plugins.protocols.stream.BufferedFramer`'s).

    :param max_buffer: bytes kept at most; beyond it the oldest are dropped (and reported)
        so a peer that sends garbage forever cannot grow memory. At least 256, the longest
        frame.
    :param slaves: slave addresses accepted in idle mode (``None``: any of 1..247).
    :param ignore: byte strings dropped whole between frames (heartbeats, an id prefix).

    Counters for metrics: ``frames``, ``crc_errors``, ``skipped`` (garbage bytes),
    ``overflows``, ``ignored`` (patterns dropped).
    """

    excerpt = EXCERPT

    def __init__(self, max_buffer: int = 1024, slaves: Collection[int] | None = None,
                 ignore: Collection[bytes] = ()) -> None:
        if max_buffer < _LONGEST:
            raise ValueError(f"max_buffer {max_buffer} is shorter than a frame ({_LONGEST})")
        super().__init__(max_buffer, ignore)
        self.slaves = frozenset(range(1, 248) if slaves is None else slaves)
        self._expected: tuple[int, int, int] | None = None
        self.frames = self.crc_errors = self.skipped = 0

    @property
    def expected(self) -> tuple[int, int, int] | None:
        """``(slave, function, length)`` of the awaited answer, or ``None`` when idle."""
        return self._expected

    def expect(self, slave: int, function: int, length: int) -> None:
        """Await the answer to a request just sent: ``length`` is the whole normal response
        in bytes, CRC included (:func:`plugins.protocols.modbus.rtu.response_length`, or
        ``ModbusMapModel.expected_length(poll)``). The framer returns to idle by itself
        once that answer, or an exception response to it, has been returned."""
        if function in READS and length < 6 or function not in READS and length < 5:
            raise ValueError(f"length {length} is too short for function {function:02d}")
        self._expected = (slave, function, length)

    def expect_answer(self, request: bytes, length: int) -> None:
        """:meth:`expect` the answer to ``request`` (its slave and function), ``length``
        bytes long (the :class:`hub.contracts.StreamFramer` contract)."""
        self.expect(request[0], request[1], length)

    def expect_nothing(self) -> None:
        """Stop waiting (the poll timed out): later frames are read in idle mode."""
        self._expected = None

    def next_frame(self) -> Frame | FrameError | None:
        """The next :class:`~plugins.protocols.modbus.rtu.Frame` (an exception response is a
        frame too: see ``Frame.is_exception``), a :class:`FrameError`, or
        :data:`NEED_DATA` when the buffer holds no complete frame yet."""
        if self._errors:
            return self._errors.pop(0)
        buf = self._buf
        while buf:
            n = self._candidate() if self._expected is None else self._expected_candidate()
            if n == _WAIT:
                return NEED_DATA
            if n == _SKIP:
                k = self._ignorable()
                if k == _WAIT:
                    return NEED_DATA
                del buf[:k or 1]
                if k:
                    self.ignored += 1
                else:
                    self.skipped += 1
                continue
            if len(buf) < n:
                return NEED_DATA
            raw = bytes(buf[:n])
            if not crc_ok(raw):
                k = self._ignorable()
                if k == _WAIT:
                    return NEED_DATA
                if k:  # a pattern that looked like the start of a frame
                    del buf[:k]
                    self.ignored += 1
                    continue
                # Resynchronise: the frame, if any, starts at one of the following bytes.
                del buf[:1]
                self.crc_errors += 1
                return FrameError("crc", raw[:EXCERPT])
            del buf[:n]
            self.frames += 1
            solicited = self._expected is not None
            self._expected = None
            return Frame(raw[0], raw[1], raw[2:-2], raw, solicited)
        return NEED_DATA

    def _expected_candidate(self) -> int:
        slave, function, length = self._expected  # type: ignore[misc]
        buf = self._buf
        if buf[0] != slave:
            return _SKIP
        if len(buf) < 2:
            return _WAIT
        if buf[1] == function | 0x80:
            return 5
        if buf[1] != function:
            return _SKIP
        if function in READS:
            if len(buf) < 3:
                return _WAIT
            if buf[2] != length - 5:  # a wrong byte count cannot be our answer
                return _SKIP
        return length

    def _candidate(self) -> int:
        buf = self._buf
        if buf[0] not in self.slaves:
            return _SKIP
        if len(buf) < 2:
            return _WAIT
        function = buf[1]
        if function & 0x80:
            return 5 if function & 0x7F in READS + WRITES else _SKIP
        if function in WRITES:
            return 8
        if function not in READS:
            return _SKIP
        if len(buf) < 3:
            return _WAIT
        count = buf[2]
        # Plausible byte counts only, so a stray byte does not hold the stream for 250 bytes.
        if count == 0 or count > 250 or (function in REGISTER_READS and count % 2):
            return _SKIP
        return 5 + count


def scan_frames(data: bytes, slaves: Collection[int] | None = None) -> list[Frame]:
    """Every valid frame in ``data`` read in idle mode, skipping garbage between them: for
    a payload that may hold several pushed frames (or a prefix the DTU added)."""
    framer = ResponseFramer(max(_LONGEST, len(data)), slaves)
    framer.feed(data)
    return [f for f in iter(framer.next_frame, NEED_DATA) if isinstance(f, Frame)]
