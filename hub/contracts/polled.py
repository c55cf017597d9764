"""The polled-device contract: a device the hub polls over a half-duplex serial line (an
RS-485 bus behind a transparent 4G DTU, the ``tcp_dtu`` transport).

The transport knows nothing of the wire protocol. It asks the device's model what to send
(:meth:`PolledDeviceModel.plan`, :meth:`~PolledDeviceModel.request`), how long an answer
is (:meth:`~PolledDeviceModel.response_length`), how to cut answers out of the byte stream
(:meth:`~PolledDeviceModel.response_framer`), and how commands become requests
(:meth:`~PolledDeviceModel.command_requests`, with an optional read-back). The line
imposes the rest: one request outstanding, a response timeout, retries.

Modbus RTU (``modbus_map``, a slave number as its ``unit``) and DL/T 645-2007 (``dlt645``,
a 12-digit meter address as its ``unit``) implement it, and ``tcp_dtu`` polls both, even on
one line: devices of one :attr:`~PolledDeviceModel.protocol` share a framer, the answer to
a request is framed by the framer of the model that sent it, and the line still carries one
request at a time whatever the protocol. What one protocol has and another lacks is
expressed so that a model without it returns nothing: an answer in several frames
(:meth:`~PolledDeviceModel.follow_up`), a periodic broadcast nobody answers
(:meth:`~PolledDeviceModel.broadcast_request`), a unit's form
(:meth:`~PolledDeviceModel.check_unit`).

All of it is sans-IO: bytes and times in, requests and records out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hub.contracts.device import DeviceModel

if TYPE_CHECKING:
    from hub.model import Command, Record

__all__ = ["NEED_DATA", "FrameError", "PolledDeviceModel", "ResponseFrame", "StreamFramer",
           "check_unit", "register_unit_form"]

#: What :meth:`StreamFramer.next_frame` returns while no complete frame is buffered.
NEED_DATA = None


#: How a unit is written in a device's address, per Python type (``int``: a Modbus slave
#: number, ``str``: a DL/T 645 meter address), registered by the models' plugins: a
#: transport checks a configured unit here, knowing no protocol itself.
_UNIT_FORMS: dict[type, list[Callable[[Any], Hashable]]] = {}


def register_unit_form(kind: type, check: Callable[[Any], Hashable]) -> None:
    """Declare that a unit of type ``kind`` is checked by ``check`` (which returns the unit
    as models take it, or raises :class:`ValueError` saying what a unit is)."""
    checks = _UNIT_FORMS.setdefault(kind, [])
    if check not in checks:
        checks.append(check)


def check_unit(unit: Any) -> Hashable:
    """``unit`` as some installed polled protocol takes it; :class:`ValueError` with the
    first protocol's reason when none does. The device's own model checks it again when
    the transport starts (:meth:`PolledDeviceModel.check_unit`)."""
    checks = [] if isinstance(unit, bool) else _UNIT_FORMS.get(type(unit), [])
    errors = []
    for check in checks:
        try:
            return check(unit)
        except ValueError as e:
            errors.append(str(e))
    if errors:
        raise ValueError(errors[0])
    kinds = " or ".join(sorted(k.__name__ for k in _UNIT_FORMS)) or "none installed"
    raise ValueError(f"{unit!r} is not a bus address of any polled protocol ({kinds})")


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
    slave number, a DL/T 645 meter address), ``raw`` the whole frame, ``solicited`` False
    for a frame that arrived while nothing was awaited (a pushing device, an answer after
    its timeout)."""

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

    def take_buffered(self) -> bytes:
        """Remove and return the bytes buffered but not yet framed: on a line of several
        protocols the transport hands them to the framer of the next request's protocol,
        so every byte is read by exactly one framer, in order."""


@runtime_checkable
class PolledDeviceModel(DeviceModel, Protocol):
    """A device model the hub polls (see the module's docstring).

    Attributes: ``poll_interval`` (seconds between two poll cycles of one device; a device's
    address may override it), ``response_timeout`` (seconds to wait for an answer; ``None``:
    the transport's option) and ``status_changes_only`` (whether :meth:`decode_response`
    takes a ``status`` memory and then reports status flags only when they changed).

    ``protocol`` names the wire protocol (``"modbus_rtu"``, ``"dlt645"``): the devices of
    one protocol on a line share one :meth:`response_framer`. ``broadcast_interval``
    (seconds, ``None``: never) is how often the transport sends :meth:`broadcast_request`
    on each line with a device of this model (e.g. a DL/T 645 time sync; off unless the
    model's options ask for it).

    A *poll* is an opaque, hashable value from :meth:`plan` that the transport hands back
    to :meth:`request` and :meth:`decode_response`. A *unit* is a device's bus address
    (``address_key[1]`` of ``tcp_dtu``: a Modbus slave number, a DL/T 645 meter address),
    as :meth:`check_unit` returned it.
    """

    poll_interval: float
    response_timeout: float | None
    status_changes_only: bool
    protocol: str
    broadcast_interval: float | None

    def check_unit(self, unit: Any) -> Hashable:
        """``unit`` (as configured) in the form :meth:`request` takes; raises
        :class:`ValueError` naming what a unit of this protocol is."""

    # -- polling
    def plan(self) -> Sequence[Hashable]:
        """The requests of one poll cycle, in order."""

    def request(self, unit: Any, poll: Any) -> bytes:
        """The bytes that ask ``unit`` for ``poll``."""

    def response_length(self, request: bytes) -> int:
        """The length in bytes of a normal answer to ``request`` (a poll, a write or a
        read-back); 0 for a request nobody answers (a broadcast)."""

    def follow_up(self, unit: Any, poll: Any, frames: Sequence[bytes]) -> bytes | None:
        """The request for the next frame of an answer to ``poll`` that ``frames`` (so far)
        do not complete, or ``None`` when they hold the whole answer (always, for a
        protocol whose answers are one frame). May raise :class:`hub.contracts.DecodeError`."""

    def broadcast_request(self, now: float) -> bytes | None:
        """The broadcast to send now (``now``: UTC seconds) every ``broadcast_interval``
        (nothing answers it), or ``None``."""

    def response_framer(self, max_buffer: int, units: Collection[Any],
                        ignore: Collection[bytes]) -> StreamFramer:
        """A framer for one line: ``units`` are the addresses expected on it, ``ignore``
        byte strings dropped whole between frames, ``max_buffer`` the bytes kept at most."""

    def decode_response(self, device: str, unit: Any, poll: Any,
                        frame: bytes | Sequence[bytes], received_at: float,
                        status: dict[int, int] | None = None) -> Sequence[Record]:
        """Records from ``frame``, ``unit``'s complete answer to ``poll`` (one frame, or the
        list of frames of an answer :meth:`follow_up` asked more frames for); raises
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
