"""The thin Twisted side of ``tcp_dtu``: a listening service, a factory holding the
listener's sessions, and a protocol per connection that feeds a sans-IO
:class:`~plugins.transports.tcp_dtu.session.DtuSession` bytes and times and carries out
what it asks (socket writes, reactor timers, the hub's port)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from hub.contracts import DeviceChange, DeviceInfo, Gateway, TransportPort
from hub.metrics import Histogram
from hub.model import Command, CommandResult
from plugins.transports.tcp_dtu.options import DtuOptions
from plugins.transports.tcp_dtu.session import DtuSession
from plugins.transports.tcp_dtu.session_io import CommandRun

__all__ = ["ROUND_TRIP_BUCKETS_MS", "DtuFactory", "DtuProtocol", "DtuService"]

_log = Logger(namespace="hub.tcp_dtu")

#: Upper bounds (ms) of the ``dtu.round_trip_ms`` buckets: request written → answer framed.
#: Each answer counts once, in the first bucket whose bound it does not exceed (label
#: ``le``; ``+Inf`` beyond the last), so the counts are per bucket, not cumulative.
ROUND_TRIP_BUCKETS_MS = (1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 200, 500, 1000, 2000,
                         5000)


class DtuProtocol(Protocol):
    """One DTU's socket: the :class:`SessionIO` of its :class:`DtuSession`."""

    def __init__(self, factory: DtuFactory) -> None:
        self.f = factory
        self.clock = factory.hub.clock
        self.timers: dict[Hashable, IDelayedCall] = {}
        self.session = DtuSession(self, factory.options, factory.name, factory.hub.metrics)
        # one bound method for all of the session's timers, not one per timer set
        self._fire_cb = self._fire

    # -- what the session is fed -----------------------------------------------------------

    def connectionMade(self) -> None:
        self.f.connections.add(self)
        self.session.connected(self.clock.seconds(),
                               len(self.f.connections) > self.f.options.max_connections)

    def connectionLost(self, reason: Any = None) -> None:
        self.f.connections.discard(self)
        self.session.lost(self.clock.seconds())

    def dataReceived(self, data: bytes) -> None:
        self.session.received(data, self.clock.seconds())

    def _fire(self, key: Hashable) -> None:
        call = self.timers.pop(key)
        self.session.timer_fired(key, self.clock.seconds(), call.getTime())

    def enqueue_command(self, device: Any, command: Command) -> defer.Deferred:
        run = self.session.enqueue_command(device, command, self.clock.seconds())
        # its canceller stops what is not on the wire yet; the Deferred then errbacks with
        # CancelledError by itself
        run.handle = d = defer.Deferred(lambda _: self.session.cancel(run))
        return d

    # -- what the session asks (SessionIO) -------------------------------------------------

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def close(self, abort: bool = False) -> None:
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def peer(self) -> str:
        peer = self.transport.getPeer() if self.transport else None
        return f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"

    def set_timer(self, key: Hashable, delay: float) -> None:
        old = self.timers.get(key)
        if old is not None and old.active():
            old.reset(delay)
        else:
            self.timers[key] = self.clock.callLater(delay, self._fire_cb, key)

    def reset_timer(self, key: Hashable, delay: float) -> None:
        call = self.timers.get(key)
        if call is not None and call.active():
            call.reset(delay)

    def cancel_timer(self, key: Hashable) -> None:
        call = self.timers.pop(key, None)
        if call is not None and call.active():
            call.cancel()

    def cancel_timers(self) -> None:
        for call in self.timers.values():
            if call.active():
                call.cancel()
        self.timers.clear()

    def devices_of(self, dtu_id: str) -> list[Any]:
        return self.f.devices_of(dtu_id)

    def claim(self, dtu_id: str, session: DtuSession) -> DtuSession | None:
        old = self.f.sessions.get(dtu_id)
        self.f.sessions[dtu_id] = self
        return old.session if old is not None else None

    def release(self, dtu_id: str, session: DtuSession) -> None:
        if self.f.sessions.get(dtu_id) is self:
            del self.f.sessions[dtu_id]

    def ingest(self, device: str, records: Any, slave: int | None) -> None:
        d = self.f.hub.ingest(device, records)
        if slave is None:
            d.addErrback(lambda f: _log.failure("journal refused a frame of {device}", f,
                                                device=device))
            return
        session = self.session

        def done(_: Any) -> None:
            session.committed(slave, self.clock.seconds())

        def refused(failure: Any) -> None:
            _log.failure("journal refused a poll of {device}", failure, device=device)
            session.committed(slave, self.clock.seconds(), failure)

        d.addCallbacks(done, refused)

    def heartbeat(self, device: str, now: float) -> None:
        self.f.hub.heartbeat(device, now)

    def command_sent(self, command: Command) -> None:
        self.f.hub.command_sent(command)

    def command_result(self, run: CommandRun, result: CommandResult) -> None:
        d = run.handle
        if d is not None and not d.called:
            d.callback(result)

    def round_trip(self, ms: float) -> None:
        self.f.round_trip.observe(ms)


class DtuFactory(Factory):
    def __init__(self, hub: TransportPort, name: str, options: DtuOptions) -> None:
        self.hub = hub
        self.name = name
        self.options = options
        self.sessions: dict[str, DtuProtocol] = {}
        self.connections: set[DtuProtocol] = set()
        self._by_dtu: dict[str, list[DeviceInfo]] | None = None
        self.round_trip = Histogram(hub.metrics, "dtu.round_trip_ms", ROUND_TRIP_BUCKETS_MS,
                                    transport=name)

    def buildProtocol(self, addr: Any) -> DtuProtocol:
        p = DtuProtocol(self)
        p.factory = self
        return p

    def devices_of(self, dtu_id: str) -> list[DeviceInfo]:
        """The slaves declared behind ``dtu_id``, or the one an auto-provisioning rule
        creates (slave 1); empty if the hub refuses it. Indexed once: a scan of the devices
        per registration made 20,000 DTUs dialling in quadratic."""
        if self._by_dtu is None:
            self._by_dtu = {}
            for d in self.hub.devices(self.name):
                self._by_dtu.setdefault(d.address_key[0], []).append(d)
        devices = self._by_dtu.get(dtu_id)
        if devices:
            return devices
        # not declared: the hub refuses and counts it, or provisions slave 1
        device = self.hub.resolve(self.name, (dtu_id, 1), identity=dtu_id)
        if device is None:
            return []
        self._index(device)  # told already when the registry added it; idempotent
        return self._by_dtu.get(dtu_id) or [device]

    def device_changed(self, change: DeviceChange) -> None:
        """The registry changed: a new DTU id is accepted at its next connect, a connected
        DTU polls a new slave at once and stops polling a deleted one (its session closes
        when that was its last device)."""
        if change.kind != "added":
            gone = change.previous or change.device
            dtu, unit = gone.address_key
            if self._by_dtu is not None:
                left = [d for d in self._by_dtu.get(dtu, ()) if d.id != gone.id]
                if left:
                    self._by_dtu[dtu] = left
                else:
                    self._by_dtu.pop(dtu, None)
            p = self.sessions.get(dtu)
            if p is not None:
                p.session.drop_unit(unit, gone.id)
        if change.kind != "removed":
            device = change.device
            self._index(device)
            p = self.sessions.get(device.address_key[0])
            if p is not None:
                p.session.add_unit(device)

    def _index(self, device: DeviceInfo) -> None:
        if self._by_dtu is None:
            return  # built from the registry at the first registration
        devices = self._by_dtu.setdefault(device.address_key[0], [])
        devices[:] = [d for d in devices if d.id != device.id] + [device]


class DtuService(Service):
    """Listens for DTUs; carries commands to their slaves."""

    port: Any = None  # the listening port, once started
    _unwatch: Any = None

    def __init__(self, hub: TransportPort, name: str, options: DtuOptions,
                 reactor: Any = None) -> None:
        self.factory = DtuFactory(hub, name, options)
        self.hub, self.transport_name, self.options = hub, name, options
        self._reactor = reactor  # None: the global reactor, imported on start

    @defer.inlineCallbacks
    def startService(self):
        self.check_units()  # before listening: a unit its model cannot address fails the start
        if self._reactor is None:
            from twisted.internet import reactor as default
            self._reactor = default
        ep = endpoints.TCP4ServerEndpoint(self._reactor, self.options.port,
                                          backlog=self.options.backlog,
                                          interface=self.options.host)
        self.port = yield ep.listen(self.factory)  # a port in use fails the hub's start
        self._unwatch = self.hub.watch_devices(self.transport_name, self.factory.device_changed)
        super().startService()
        self.hub.register_command_target(self.transport_name, self)
        _log.info("{transport}: listening for DTUs on {host}:{port}", transport=self.transport_name,
                  host=self.options.host, port=self.port.getHost().port)

    def check_units(self) -> None:
        """Every device's unit in the form its model takes (a slave number for Modbus, a
        meter address for DL/T 645): the configuration checked only that some protocol
        takes it. Raises :class:`ValueError` naming the devices."""
        bad = []
        for d in self.hub.devices(self.transport_name):
            check = getattr(d.model, "check_unit", None)
            if check is None:
                continue
            try:
                check(d.address_key[1])
            except ValueError as e:
                bad.append(f"device {d.id} (model {d.model_name}): {e}")
        if bad:
            raise ValueError(f"{self.transport_name}: " + "; ".join(bad))

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        self.hub.unregister_command_target(self.transport_name)
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self.port is not None:
            yield self.port.stopListening()
        for p in list(self.factory.connections):
            p.transport.loseConnection()

    def gateways(self) -> list[Gateway]:
        """Every DTU with devices declared behind it, connected or not, and every other one
        connected now."""
        behind: dict[str, list[str]] = {}
        for d in self.hub.devices(self.transport_name):
            behind.setdefault(d.address_key[0], []).append(d.id)
        out = []
        auth = f"registration id ({self.options.registration.mode})"
        for dtu in sorted(set(behind) | set(self.factory.sessions)):
            p = self.factory.sessions.get(dtu)
            live = p is not None and not p.session.closed
            out.append(Gateway(id=dtu, transport=self.transport_name, kind="dtu", auth=auth,
                               connected=live, address=p.peer() if live else None,
                               last_seen=p.session.last_input if p is not None else None,
                               devices=tuple(behind.get(dtu, ()))))
        return out

    def send_command(self, device: Any, command: Command) -> defer.Deferred:
        session = self.factory.sessions.get(device.address_key[0])
        if session is None or session.session.closed:
            return defer.fail(ConnectionError(f"DTU {device.address_key[0]} is not connected"))
        return session.enqueue_command(device, command)
