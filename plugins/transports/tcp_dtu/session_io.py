"""What a :class:`~plugins.transports.tcp_dtu.session.DtuSession` asks of the world around it
(:class:`SessionIO`), and the values it keeps on its queues (:class:`Request`,
:class:`CommandRun`)."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from hub.contracts import DeviceInfo
    from hub.model import Command, CommandResult, Record
    from plugins.transports.tcp_dtu.session import DtuSession

__all__ = ["IDLE", "RESPONSE", "CommandRun", "Request", "SessionIO", "hex_excerpt", "interval"]

IDLE = "idle"
RESPONSE = "response"


def interval(device: Any) -> float:
    """Seconds between two polls of ``device``: its address's ``poll_interval``, or its
    model's."""
    address = device.address if isinstance(device.address, dict) else {}
    return address.get("poll_interval") or device.model.poll_interval


def hex_excerpt(data: bytes, limit: int = 48) -> str:
    return data[:limit].hex(" ") + (" …" if len(data) > limit else "")


class SessionIO(Protocol):
    """What a :class:`DtuSession` asks of the world around it."""

    def write(self, data: bytes) -> None: ...

    def close(self, abort: bool = False) -> None:
        """Close the connection (``abort``: at once, without flushing)."""

    def peer(self) -> str: ...

    def set_timer(self, key: Hashable, delay: float) -> None:
        """Call ``timer_fired(key, …)`` in ``delay`` seconds, replacing a pending one."""

    def reset_timer(self, key: Hashable, delay: float) -> None:
        """Move a *pending* timer to ``delay`` seconds from now; no-op if none is pending."""

    def cancel_timer(self, key: Hashable) -> None: ...

    def cancel_timers(self) -> None: ...

    def devices_of(self, dtu_id: str) -> list[DeviceInfo]:
        """The devices behind ``dtu_id`` (an auto-provisioned one if a rule allows); an
        empty list refuses the DTU."""

    def claim(self, dtu_id: str, session: DtuSession) -> DtuSession | None:
        """Make ``session`` the one of ``dtu_id``; returns the one it replaces."""

    def release(self, dtu_id: str, session: DtuSession) -> None:
        """``session`` of ``dtu_id`` ended (if it is still the registered one)."""

    def ingest(self, device: str, records: list[Record], slave: int | None) -> None:
        """Journal ``records``. For a poll's answer (``slave`` given) call
        ``committed(slave, now, error)`` after the commit; raising here is allowed."""

    def heartbeat(self, device: str, now: float) -> None: ...

    def command_sent(self, command: Command) -> None: ...

    def command_result(self, run: CommandRun, result: CommandResult) -> None: ...

    def round_trip(self, ms: float) -> None: ...


@dataclass(slots=True)
class Request:
    """One request on the line: a poll of a slave (or a follow-up for the rest of its
    answer), one write of a command, or a broadcast (``length`` 0: nobody answers)."""

    device: Any  # a hub.contracts.DeviceInfo whose model is a PolledDeviceModel
    frame: bytes
    length: int  # of a normal answer
    poll: Any = None  # the model's poll, or None for a command write
    command: CommandRun | None = None  # the command this write belongs to
    readback_of: bytes | None = None  # for a read-back: the write it confirms
    parts: list[bytes] | None = None  # for a follow-up: the answer's frames so far
    tries: int = 0
    sent_at: float = 0.0  # when the last try was written


@dataclass(eq=False)
class CommandRun:
    command: Command
    device: Any
    writes: list[bytes]
    #: its time to live ran out (the hub cancelled it): a write already on the wire may
    #: finish, but nothing more of it is written, so a trip journaled as timed out cannot
    #: happen later
    cancelled: bool = False
    #: the caller's handle (the Twisted shell keeps the command's Deferred here)
    handle: Any = field(default=None, repr=False)
