"""Built-in plugin: simulated detectors, for demos, commissioning and sink testing.

The ``simulator`` transport plays the devices configured on it: every ``interval`` seconds
it produces a frame for each one according to the device's ``address``, which names a
profile, and hands the frame to the device's model like any transport would. The
``simulated`` device model decodes those frames (``temperature/T1=25.3;voltage/A=220.1``).

Profiles (deterministic: the noise is seeded by the device id; the values come from the
shared scenario engine, :mod:`plugins.simulators.scenario`):

* ``normal``: values near nominal: 220 V, 10 A, 25 °C, 30 mA residual current.
* ``overheat``: temperature T1 climbs from 30 °C to 95 °C over ``period`` seconds, then
  falls back: a warning, an alarm and their clears every period.
* ``leakage``: residual current L1 jumps to 450 mA for a fifth of every period.
* ``flaky``: reports for half of every period and is silent for the other half, so it goes
  offline and comes back when its heartbeat timeout is shorter than half the period.
* ``silent``: never reports (offline once its timeout passes).

The transport carries commands: ``reset``, ``silence``, ``self_test``, ``trip`` and
``close`` (:mod:`plugins.simulators.demo.device` says what each does to the values). A
command is sent at once, acknowledged ``response_delay`` seconds later (succeeded, with
the device's acknowledgement as detail) and followed by a frame of that device, so its
effect shows without waiting for the next tick. A device that is silent at that moment
cannot hear it: the command fails. With ``latching: true`` the devices also report their
own alarms, latched until ``reset``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.application.internet import TimerService
from twisted.internet import defer
from twisted.logger import Logger

from hub import hookimpl
from hub import model as m
from hub.contracts import (
    DecodeError,
    DeviceChange,
    DeviceModelType,
    EncodeError,
    Gateway,
    TransportPort,
    TransportType,
)
from hub.validate import Invalid, Section, boolean, number
from plugins.simulators.demo.device import ACTIONS, PROFILES, DemoDevice, Refused

__all__ = ["PROFILES", "SimulatedModel", "SimulatorOptions", "SimulatorService"]

_log = Logger(namespace="hub.simulator")


@dataclass(frozen=True)
class SimulatorOptions:
    interval: float = 10.0
    period: float = 600.0
    latching: bool = False  # devices report their own alarms, latched until reset
    response_delay: float = 0.2  # s from a command to its acknowledgement


def check_options(section: Section) -> SimulatorOptions:
    opts = SimulatorOptions(
        interval=section.get("interval", number(0.01, 3600, "s"), 10.0),
        period=section.get("period", number(1, 86400, "s"), 600.0),
        latching=section.get("latching", boolean, False),
        response_delay=section.get("response_delay", number(0, 60, "s"), 0.2),
    )
    section.finish()
    return opts


def check_address(address: object) -> str:
    if address not in PROFILES:
        raise Invalid(f"{address!r} is not a simulator profile; one of {', '.join(PROFILES)}")
    return str(address)


class SimulatedModel:
    """Decodes the demo devices' frames (:mod:`plugins.simulators.demo.device`) and encodes
    their commands. Pure, like every device model."""

    heartbeat_interval = None
    timeout_count = None

    def decode(self, device: str, payload: bytes,
               received_at: float) -> Sequence[m.Reading | m.Event]:
        out: list[m.Reading | m.Event] = []
        try:
            text = payload.decode("ascii")
        except UnicodeDecodeError as e:
            raise DecodeError(f"not ASCII at offset {e.start}", payload[:32], e.start) from None
        for item in filter(None, text.split(";")):
            try:
                key, value = item.split("=")
                kind, _, key = key.rpartition(":")
                name, _, channel = key.partition("/")
                m.check_channel(channel)
                if kind == "event":
                    out.append(m.Event(device, m.EventKind.STATE, name, m.EventState.NOTICE,
                                       received_at, m.Level.INFO, channel, source="device",
                                       message=value))
                elif kind == "alarm":
                    if name not in m.ALARM_RULES or value not in ("0", "1"):
                        raise m.SchemaError(f"unknown alarm {name!r} or state {value!r}")
                    state = m.EventState.RAISED if value == "1" else m.EventState.CLEARED
                    out.append(m.Event(device, m.EventKind.ALARM, name, state, received_at,
                                       m.Level.ALARM, channel, source="device",
                                       message="latched by the detector until reset"))
                elif kind:
                    raise m.SchemaError(f"unknown item kind {kind!r}")
                else:
                    if name not in m.QUANTITIES:
                        raise m.SchemaError(f"unknown quantity {name!r}")
                    out.append(m.Reading(device, name, float(value), received_at, channel))
            except (ValueError, m.SchemaError) as e:
                raise DecodeError(f"bad item {item!r}: {e}", item.encode()[:32]) from None
        return out

    def encode_command(self, device: str, command: m.Command) -> bytes:
        if command.action not in ACTIONS:
            raise EncodeError(f"the demo detector takes {', '.join(ACTIONS)}, "
                              f"not {command.action!r}")
        return f"cmd:{command.action}".encode("ascii")


class SimulatorService(TimerService):
    """Ticks every ``interval`` and feeds each simulated device's frame through the hub;
    carries commands to the simulated devices."""

    def __init__(self, hub: TransportPort, name: str, options: SimulatorOptions) -> None:
        super().__init__(options.interval, self.tick)
        self.clock = hub.clock
        self.hub = hub
        self.transport = name
        self.options = options
        self.devices: dict[str, DemoDevice] = {}
        self._unwatch: Any = None
        self.seen: dict[str, float] = {}  # device -> when it last sent a frame

    def startService(self) -> None:
        super().startService()
        self.hub.register_command_target(self.transport, self)
        self._unwatch = self.hub.watch_devices(self.transport, self.device_changed)

    def stopService(self) -> Any:
        self.hub.unregister_command_target(self.transport)
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        return super().stopService()

    def device_changed(self, change: DeviceChange) -> None:
        """A deleted or changed device's simulated state goes (a new profile starts anew);
        the next tick lists the devices from the registry, so a new one reports then."""
        if change.kind != "added":
            gone = (change.previous or change.device).id
            self.devices.pop(gone, None)
            self.seen.pop(gone, None)

    def gateways(self) -> list[Gateway]:
        """Each simulated device is its own gateway, always connected."""
        return [Gateway(id=d.id, transport=self.transport, kind="simulator",
                        auth="none (in the hub)", connected=True, address=None,
                        last_seen=self.seen.get(d.id), devices=(d.id,))
                for d in self.hub.devices(self.transport)]

    def device(self, device: Any) -> DemoDevice:
        sim = self.devices.get(device.id)
        if sim is None:
            sim = self.devices[device.id] = DemoDevice(
                device.address_key, self.options.period, device.id, self.options.latching)
        return sim

    def tick(self) -> None:
        for device in self.hub.devices(self.transport):
            self.report(device)

    def report(self, device: Any) -> None:
        """Hand the frame ``device`` sends now (if any) to its model and the hub."""
        now = self.hub.clock.seconds()
        data = self.device(device).frame(now)
        if data is None:
            return
        self.seen[device.id] = now
        try:
            records = device.model.decode(device.id, data, now)
        except DecodeError as e:
            self.hub.metrics.inc("transport.decode_errors", transport=self.transport)
            _log.warn("bad frame from {device}: {error} ({hex})", device=device.id,
                      error=e, hex=e.excerpt.hex(" "))
            return
        self.hub.ingest(device.id, records, now)

    def send_command(self, device: Any, command: m.Command) -> defer.Deferred:
        """Encode ``command`` with the device's model, hand it to the simulated device and
        answer with its acknowledgement after ``response_delay``."""
        sim = self.device(device)
        if sim.silent(self.clock.seconds()):
            return defer.fail(ConnectionError(f"{device.id} is not reachable now (profile "
                                              f"{device.address_key})"))
        data = device.model.encode_command(device.id, command)  # EncodeError: the command fails
        self.hub.command_sent(command)
        d: defer.Deferred = defer.Deferred()

        def answer() -> None:
            if d.called:  # timed out or cancelled meanwhile
                return
            try:
                ack = sim.receive(data)
            except Refused as e:
                d.callback(m.CommandResult(command.id, device.id, m.CommandStatus.FAILED,
                                           self.clock.seconds(), str(e)))
                return
            self.report(device)  # the effect shows at once, not at the next tick
            d.callback(m.CommandResult(command.id, device.id, m.CommandStatus.SUCCEEDED,
                                       self.clock.seconds(), ack))

        call = self.clock.callLater(self.options.response_delay, answer)

        def forget(result: object) -> object:  # the hub gave up (time to live): no answer
            if call.active():
                call.cancel()
            return result

        return d.addBoth(forget)


@hookimpl
def hub_register_transport_types() -> list[TransportType]:
    return [TransportType("simulator", SimulatorService, check_options,
                          "simulated detectors for demos and commissioning",
                          check_address=check_address)]


@hookimpl
def hub_register_device_models() -> list[DeviceModelType]:
    return [DeviceModelType("simulated", lambda options: SimulatedModel(),
                            description="frames of the simulator transport")]
