"""What every stream framer of a DTU line shares: a bounded receive buffer, patterns to drop
whole (heartbeats, an id prefix) and errors reported as values.

A framer (Modbus RTU in :mod:`plugins.protocols.modbus.framer`, DL/T 645 in
:mod:`plugins.protocols.dlt645.framer`) subclasses :class:`BufferedFramer` and implements
``next_frame()`` over ``self._buf``: the h11 contract, where :meth:`~BufferedFramer.feed`
only buffers and ``next_frame`` returns one result at a time or ``None`` (need data).
"""

from __future__ import annotations

from collections.abc import Collection

from hub.contracts.polled import FrameError

__all__ = ["WAIT", "BufferedFramer", "FrameError"]

#: :meth:`BufferedFramer._ignorable`: the buffer is the start of a pattern, wait for more
WAIT = -1


class BufferedFramer:
    """The buffer half of a framer. ``max_buffer``: bytes kept at most; beyond it the oldest
    are dropped and reported (``"overflow"``), so a peer that sends garbage forever cannot
    grow memory. ``ignore``: byte strings dropped whole between frames.

    Counters: ``overflows``, ``ignored``."""

    #: bytes of dropped data kept in a :class:`FrameError` for the log
    excerpt = 48

    def __init__(self, max_buffer: int, ignore: Collection[bytes] = ()) -> None:
        self.max_buffer = max_buffer
        self._buf = bytearray()
        self._errors: list[FrameError] = []  # rare: a list is 500 bytes less than a deque
        # shared, not copied, when it is already a tuple: one framer per DTU session
        self.ignore = tuple(ignore) if all(ignore) else tuple(p for p in ignore if p)
        self.overflows = self.ignored = 0

    @property
    def buffered(self) -> bytes:
        """Bytes received and not yet consumed."""
        return bytes(self._buf)

    def take_buffered(self) -> bytes:
        """Remove and return the bytes not yet framed (see
        :meth:`hub.contracts.StreamFramer.take_buffered`)."""
        return self.clear()

    def feed(self, data: bytes) -> None:
        """Buffer received bytes; nothing is parsed until ``next_frame()``."""
        self._buf += data
        excess = len(self._buf) - self.max_buffer
        if excess > 0:
            self.overflows += 1
            dropped = bytes(self._buf[:min(excess, self.excerpt)])
            self._errors.append(FrameError("overflow", dropped))
            del self._buf[:excess]

    def clear(self) -> bytes:
        """Drop and return everything buffered."""
        out = bytes(self._buf)
        self._buf.clear()
        return out

    def _ignorable(self) -> int:
        """The length of an ignored pattern at the front of the buffer, :data:`WAIT` if the
        buffer is the start of one, else 0."""
        buf = self._buf
        wait = False
        for p in self.ignore:
            if buf.startswith(p):
                return len(p)
            if len(buf) < len(p) and p.startswith(buf):
                wait = True
        return WAIT if wait else 0
