"""What a sink may use of the hub: a narrow, typed port instead of the whole ``Hub``.

A sink reads the journal, keeps metrics, journals its own fault events and looks up the
devices it names (for tags, addresses, texts). Nothing else of the hub is its business: it
never ingests, never touches presence or the alarm engine, never commands a device. Sinks
get a :class:`SinkPort`; tests may build one by hand around a temporary journal
(:func:`hub.testing.sink_harness` does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from hub.metrics import Metrics
from hub.model import Acknowledgement, Delivery, Event, Reading

if TYPE_CHECKING:
    from hub.core import Hub


class SinkJournal(Protocol):
    """The journal as a sink sees it (:class:`hub.journal.Journal` provides it).

    :class:`hub.journal.Journal` also has ``follow(name, seq)`` and ``unfollow(name)``,
    which :class:`hub.sinks.JournalTail` calls when the journal has them: the newest rows
    stay in memory until a sink reading readings has read them."""

    def last_seq(self) -> int:
        """The seq of the newest committed record."""

    def read(self, after: int, limit: int = 1000,
             kinds: set[str] | None = None) -> list[tuple[int, object]]:
        """``(seq, record)`` of committed records with ``seq > after``, in seq order."""

    def read_rows(self, after: int, limit: int = 1000,
                  kinds: set[str] | None = None) -> list[tuple]:
        """The same as stored rows ``(seq, kind, series, ts, value, quality, data)``."""

    def series_key(self, sid: int) -> tuple[str, str, str]:
        """``(device, channel, quantity)`` of a series id of a row."""

    def record(self, row: tuple) -> object:
        """The record of a stored row."""

    def get_cursor(self, name: str) -> int:
        """The durable position of cursor ``name`` (0 if never set)."""

    def set_cursor(self, name: str, seq: int) -> None:
        """Move cursor ``name`` to ``seq``; durable when it returns."""

    def when_past(self, seq: int) -> Deferred[int]:
        """Fires after the commit that takes the journal past ``seq``."""

    def commit_time(self, seq: int) -> float | None:
        """When record ``seq`` was committed by the hub."""

    def on_rewind(self, name: str, listener: Callable[[int], None]) -> Callable[[], None]:
        """Be told when an operator rewinds cursor ``name``."""

    def append(self, records: Iterable[Any]) -> Deferred[int]:
        """Journal records of the sink's own (a :class:`hub.model.Delivery`)."""

    def active_events(self) -> list[Event]:
        """Raised, not yet cleared alarms and faults."""

    def active_after(self, after: int, limit: int = 100,
                     kind: str | None = None) -> list[tuple[int, Event]]:
        """Active events raised past ``after`` (to let alarms overtake a backlog)."""

    def latest(self, device: str, quantity: str | None = None) -> list[Reading]:
        """The newest reading of each series of ``device``."""

    def events(self, device: str | None = None, since: float | None = None,
               limit: int = 1000) -> list[Event]:
        """The newest events."""

    def event(self, event_id: str) -> Event | None:
        """The newest record of one event."""

    def acknowledgements(self, device: str | None = None) -> list[Acknowledgement]:
        """Acknowledgements, oldest first."""

    def deliveries(self, since: float, sink: str | None = None) -> list[tuple[int, Delivery]]:
        """Deliveries journaled since ``since``."""


@dataclass(frozen=True)
class DeviceInfo:
    """A configured device as sinks name it; ``position`` is its 1-based place in the
    configuration (a stable small number some protocols use as an address)."""

    id: str
    name: str
    model: str = ""
    project: str = ""
    location: str = ""
    group: str = ""
    position: int = 0


@dataclass
class SinkPort:
    """Everything a sink is given. ``devices()`` is read at call time: a sink that caches
    what it derives from it does so for its own lifetime (one configuration)."""

    clock: IReactorTime
    metrics: Metrics
    journal: SinkJournal
    #: journal fault or state events of the sink's own (``sink_lagging``, dead letters);
    #: they reach observers and every sink like any other event
    record_events: Callable[[Sequence[Event]], Deferred]
    devices: Callable[[], Sequence[DeviceInfo]]
    state_dir: str
    #: the SMS provider types registered by plugins (``hub_register_sms_providers``)
    sms_providers: Mapping[str, Any] = field(default_factory=dict)

    def device(self, device_id: str) -> DeviceInfo | None:
        """The configured device ``device_id``, or None (the hub itself, a removed one)."""
        return _index(self.devices()).get(device_id)

    @classmethod
    def from_hub(cls, hub: Hub) -> SinkPort:
        """The port of a running hub (what the service tree gives each sink)."""
        cache: list[Any] = [-1, ()]

        def devices() -> Sequence[DeviceInfo]:
            # built again only when the registry grew (auto-provisioning): sinks ask per
            # record, and a registry holds tens of thousands of devices
            if cache[0] != len(hub.registry):
                cache[1] = tuple(
                    DeviceInfo(d.id, d.name, d.model_name, d.project, d.location, d.group, i)
                    for i, d in enumerate(hub.registry, 1))
                cache[0] = len(hub.registry)
            return cache[1]

        return cls(clock=hub.clock, metrics=hub.metrics, journal=hub.journal,
                   record_events=hub.record_events, devices=devices,
                   state_dir=hub.config.state_dir,
                   sms_providers=getattr(hub.plugins, "sms_providers", {}))


_INDEXES: dict[int, tuple[Sequence[DeviceInfo], dict[str, DeviceInfo]]] = {}


def _index(devices: Sequence[DeviceInfo]) -> dict[str, DeviceInfo]:
    """id -> device of a ``devices()`` answer, kept while the same sequence comes back."""
    hit = _INDEXES.get(id(devices))
    if hit is not None and hit[0] is devices:
        return hit[1]
    if len(_INDEXES) > 16:
        _INDEXES.clear()
    index = {d.id: d for d in devices}
    _INDEXES[id(devices)] = (devices, index)
    return index


def as_port(hub_or_port: Any) -> SinkPort:
    """A sink factory is called with the hub (``SinkType.factory(hub, name, options)``);
    sinks built on :class:`hub.sinks.CursorSink` keep only this port of it."""
    return hub_or_port if isinstance(hub_or_port, SinkPort) else SinkPort.from_hub(hub_or_port)
