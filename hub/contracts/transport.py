"""The transport contract: what a transport service is, and the narrow port through which
it talks to the hub.

A transport owns sockets and sessions. It identifies a device (with the help of its
model), keeps it online, paces polling and delivers downlink commands; it never
interprets payloads (its devices' models do) and it never reaches into the hub's journal,
registry or command queue. Everything it may ask of the hub is :class:`TransportPort`; a
transport's ``factory(port, name, options)`` gets one (see
:class:`hub.contracts.TransportType`).

A transport that carries commands implements :class:`CommandTarget` and registers it
through the port when it starts; one that has gateways (DTUs, LwM2M endpoints, MQTT clients)
also implements :class:`GatewaySource` on that target, and the hub lists them from there.
A transport that indexes its devices watches the registry (``watch_devices``) so that a
device added, changed or removed while it runs (through the API) takes effect at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IReactorTime

    from hub.metrics import Metrics
    from hub.model import Command, Event, Record

__all__ = ["CommandTarget", "DeviceChange", "DeviceInfo", "Gateway", "GatewaySource",
           "TransportPort"]


@runtime_checkable
class DeviceInfo(Protocol):
    """A device as the hub knows it (from the configuration or an auto-provisioning rule).

    ``model`` is the device's model object (a :class:`hub.contracts.DeviceModel`, or a
    richer contract the transport expects); ``address`` is the device's ``address`` as
    configured and ``address_key`` what the transport's ``check_address`` made of it.
    """

    id: str
    model_name: str
    model: Any
    transport: str | None
    address: Any
    address_key: Any
    provisioned: bool


@dataclass(frozen=True)
class DeviceChange:
    """A device of the registry added, changed or removed while the hub runs.

    ``device`` is the device now (for ``removed``: as it was); ``previous`` is the device as
    it was before a ``changed`` (its address, and so its DTU or endpoint, may differ).
    """

    kind: Literal["added", "changed", "removed"]
    device: DeviceInfo
    previous: DeviceInfo | None = None


@dataclass(frozen=True)
class Gateway:
    """What sits between the hub and devices: a DTU, an LwM2M endpoint, an MQTT client.

    ``kind`` names it (``dtu``, ``lwm2m``, ``mqtt``, ``simulator``); ``auth`` how it is
    recognised (``registration id``, ``endpoint name``, ``broker``); ``address`` its peer
    address while connected; ``last_seen`` the reactor time of its last message (``None``:
    never since the start); ``devices`` the ids of the devices behind it.
    """

    id: str
    transport: str
    kind: str
    auth: str
    connected: bool
    address: str | None
    last_seen: float | None
    devices: tuple[str, ...]


@runtime_checkable
class GatewaySource(Protocol):
    """A transport's gateways, as they stand now (a cheap walk of its own tables)."""

    def gateways(self) -> Sequence[Gateway]: ...


class CommandTarget(Protocol):
    """What a transport service offers to carry commands to its devices: a Deferred that
    fires with the command's final :class:`hub.model.CommandResult` (the hub enforces the
    time to live by cancelling it)."""

    def send_command(self, device: Any, command: Command) -> Deferred: ...


@runtime_checkable
class TransportPort(Protocol):
    """The hub as a transport sees it.

    *Devices* — ``devices(transport)`` lists the devices configured on a transport (index
    them once at start); ``device(id)`` finds one by id (``None`` if unknown);
    ``resolve(transport, address_key, identity)`` identifies a device that presented
    itself, or returns ``None``: the hub refused and counted it (or an auto-provisioning
    rule created it). ``watch_devices(transport, listener)`` tells ``listener`` of every
    :class:`DeviceChange` on ``transport`` from now on, synchronously on the reactor (a
    device moved to another transport is ``removed`` here and ``added`` there); it
    returns the function that stops it (call it on stop).

    *Data* — ``ingest(device, records)`` and ``ingest_many(batch)`` take a device model's
    records; the Deferred fires after the journal commit, and only then may the transport
    acknowledge upstream. ``record_events`` journals events the transport decides itself
    (a broker link lost).

    *Presence* — ``heartbeat(device)`` is a sign of life that carries no data;
    ``set_offline_after(device, seconds)`` replaces heartbeat interval × timeout count for
    a device whose protocol states its own lifetime (``None`` restores it).

    *Commands* — ``register_command_target``/``unregister_command_target`` on start and
    stop; ``command_sent`` when a command is on the wire (journaled once);
    ``command_queued`` when the transport holds it until its device can hear it;
    ``command_waiting(id)`` whether the hub still waits for it to be sent;
    ``resume_commands(devices, since)`` hands commands accepted before a restart and not
    finished back to the hub, which sends them to their transport again.

    *Services* — ``clock`` (the injected reactor time: never read the wall clock) and
    ``metrics`` (counters and gauges, ``inc``/``set``).
    """

    clock: IReactorTime
    metrics: Metrics

    # -- devices
    def devices(self, transport: str) -> Sequence[DeviceInfo]: ...

    def device(self, device_id: str) -> DeviceInfo | None: ...

    def resolve(self, transport: str, address_key: Any,
                identity: str | None = None) -> DeviceInfo | None: ...

    def watch_devices(self, transport: str,
                      listener: Callable[[DeviceChange], None]) -> Callable[[], None]: ...

    # -- data
    def ingest(self, device: str, records: Sequence[Record],
               received_at: float | None = None) -> Deferred: ...

    def ingest_many(self, batch: Sequence[tuple[str, Sequence[Record]]],
                    received_at: float | None = None) -> Deferred: ...

    def record_events(self, events: Iterable[Event]) -> Deferred: ...

    # -- presence
    def heartbeat(self, device: str, ts: float | None = None) -> None: ...

    def set_offline_after(self, device: str, seconds: float | None) -> None: ...

    # -- commands
    def register_command_target(self, transport: str, target: CommandTarget) -> None: ...

    def unregister_command_target(self, transport: str) -> None: ...

    def command_sent(self, command: Command) -> None: ...

    def command_queued(self, command: Command, detail: str, again: bool = False) -> None: ...

    def command_waiting(self, command_id: str) -> bool: ...

    def resume_commands(self, devices: Sequence[str], since: float) -> int: ...
