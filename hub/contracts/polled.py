"""The polled-device contract: a device the hub polls over a half-duplex serial line (an
RS-485 bus behind a transparent 4G DTU, the ``tcp_dtu`` transport).

The transport knows nothing of the wire protocol. It asks the device's model what to send
(:meth:`PolledDeviceModel.plan`, :meth:`~PolledDeviceModel.request`), how long an answer
is (:meth:`~PolledDeviceModel.response_length`), how to cut answers out of the byte stream
(:meth:`~PolledDeviceModel.response_framer`), and how commands become requests
(:meth:`~PolledDeviceModel.command_requests`, with an optional read-back). The line
imposes the rest: one request outstanding, a response timeout, retries.

Modbus RTU (``modbus_map``) implements it today; a DL/T 645 meter model would implement the
same methods with its own framer (``68 … 16`` frames, an address of six BCD bytes as its
``unit``), and ``tcp_dtu`` would poll it unchanged.

All of it is sans-IO: bytes and times in, requests and records out.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hub.contracts.device import DeviceModel

if TYPE_CHECKING:
    from hub.model import Command, Record

__all__ = ["NEED_DATA", "FrameError", "PolledDeviceModel", "ResponseFrame", "StreamFramer"]

#: What :meth:`StreamFramer.next_frame` returns while no complete frame is buffered.
NEED_DATA = None


@dataclass(frozen=True, slots=True)
class FrameError:
    """Something a framer threw away, as a value (a framer never raises on input):
    ``reason`` is short and fit for a metric label (``"crc"``: a candidate frame of the
    right shape failed its check; ``"overflow"``: the buffer was full and its oldest bytes
    were dropped); ``data`` is an excerpt of the bytes concerned."""

    reason: str
    data: bytes

    def __str__(self) -> str:
        return f"{self.reason}: {self.data.hex(' ')}"


class ResponseFrame(Protocol):
    """One complete, checked frame: ``unit`` is the bus address it came from (a Modbus
    slave), ``raw`` the whole frame, ``solicited`` False for a frame that arrived while
    nothing was awaited (a pushing device, an answer after its timeout)."""

    @property
    def unit(self) -> Hashable: ...

    raw: bytes
    solicited: bool


class StreamFramer(Protocol):
    """Cuts frames out of one connection's byte stream, in any pieces (h11's contract:
    :meth:`feed` only buffers, :meth:`next_frame` returns one result at a time).

    ``ignored`` counts patterns it dropped whole (DTU heartbeats, a repeated id prefix);
    the transport takes a change of it as a sign of life.
    """

    ignored: int

    def feed(self, data: bytes) -> None: ...

    def expect_answer(self, request: bytes, length: int) -> None:
        """The answer to ``request`` (just written) is awaited; a normal answer is
        ``length`` bytes long. The framer returns to idle by itself once it has returned
        that answer (or an error answer to it)."""

    def expect_nothing(self) -> None:
        """Stop awaiting (the request timed out): later frames are read as unsolicited."""

    def next_frame(self) -> ResponseFrame | FrameError | None:
        """The next frame, a :class:`FrameError`, or :data:`NEED_DATA`."""


@runtime_checkable
class PolledDeviceModel(DeviceModel, Protocol):
    """A device model the hub polls (see the module's docstring).

    Attributes: ``poll_interval`` (seconds between two poll cycles of one device; a device's
    address may override it), ``response_timeout`` (seconds to wait for an answer; ``None``:
    the transport's option) and ``status_changes_only`` (whether :meth:`decode_response`
    takes a ``status`` memory and then reports status flags only when they changed).

    A *poll* is an opaque, hashable value from :meth:`plan` that the transport hands back
    to :meth:`request` and :meth:`decode_response`. A *unit* is a device's bus address
    (``address_key[1]`` of ``tcp_dtu``: a Modbus slave).
    """

    poll_interval: float
    response_timeout: float | None
    status_changes_only: bool

    # -- polling
    def plan(self) -> Sequence[Hashable]:
        """The requests of one poll cycle, in order."""

    def request(self, unit: Any, poll: Any) -> bytes:
        """The bytes that ask ``unit`` for ``poll``."""

    def response_length(self, request: bytes) -> int:
        """The length in bytes of a normal answer to ``request`` (a poll, a write or a
        read-back)."""

    def response_framer(self, max_buffer: int, units: Collection[Any],
                        ignore: Collection[bytes]) -> StreamFramer:
        """A framer for one line: ``units`` are the addresses expected on it, ``ignore``
        byte strings dropped whole between frames, ``max_buffer`` the bytes kept at most."""

    def decode_response(self, device: str, unit: Any, poll: Any, frame: bytes,
                        received_at: float, status: dict[int, int] | None = None
                        ) -> Sequence[Record]:
        """Records from ``frame``, ``unit``'s complete answer to ``poll``; raises
        :class:`hub.contracts.DecodeError`. ``status`` (only if ``status_changes_only``):
        the caller's memory of this device's status words, ``{}`` at first."""

    # -- commands
    def command_requests(self, command: Command, unit: Any) -> Sequence[bytes]:
        """The writes that carry out ``command``, sent one at a time, each after the
        answer to the previous one; raises :class:`hub.contracts.EncodeError`."""

    def check_write_response(self, request: bytes, frame: bytes) -> None:
        """Accept the answer to a write, or raise :class:`hub.contracts.DecodeError`."""

    def needs_readback(self, command: Command) -> bool:
        """Whether each write of ``command`` is read back after its answer."""

    def readback_request(self, write: bytes) -> bytes:
        """The read that fetches what ``write`` set."""

    def check_readback(self, write: bytes, frame: bytes) -> None:
        """Accept ``frame`` if it reads back what ``write`` set, else raise
        :class:`hub.contracts.DecodeError`."""
