"""Built-in plugin: simulated detectors, for demos, commissioning and sink testing.

The ``simulator`` transport plays the devices configured on it: every ``interval`` seconds
it produces a frame for each one according to the device's ``address``, which names a
profile, and hands the frame to the device's model like any transport would. The
``simulated`` device model decodes those frames (``temperature/T1=25.3;voltage/A=220.1``).

Profiles (deterministic: the noise is seeded by the device id):

* ``normal``: values near nominal: 220 V, 10 A, 25 °C, 30 mA residual current.
* ``overheat``: temperature T1 climbs from 30 °C to 95 °C over ``period`` seconds, then
  falls back: a warning, an alarm and their clears every period.
* ``leakage``: residual current L1 jumps to 450 mA for a fifth of every period.
* ``flaky``: reports for half of every period and is silent for the other half, so it goes
  offline and comes back when its heartbeat timeout is shorter than half the period.
* ``silent``: never reports (offline once its timeout passes).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from twisted.application.internet import TimerService
from twisted.logger import Logger

from hub import hookimpl
from hub.contracts import DecodeError, DeviceModelType, EncodeError, TransportType
from hub.model import QUANTITIES, Reading, SchemaError, check_channel
from hub.validate import Invalid, Section, number

PROFILES = ("normal", "overheat", "leakage", "flaky", "silent")

_log = Logger(namespace="hub.simulator")


@dataclass(frozen=True)
class SimulatorOptions:
    interval: float = 10.0
    period: float = 600.0


def check_options(section: Section) -> SimulatorOptions:
    opts = SimulatorOptions(
        interval=section.get("interval", number(0.01, 3600, "s"), 10.0),
        period=section.get("period", number(1, 86400, "s"), 600.0),
    )
    section.finish()
    return opts


def check_address(address: object) -> str:
    if address not in PROFILES:
        raise Invalid(f"{address!r} is not a simulator profile; one of {', '.join(PROFILES)}")
    return str(address)


def frame(profile: str, t: float, period: float, rng: random.Random) -> bytes | None:
    """The frame a simulated device of ``profile`` sends at time ``t``, or None."""
    phase = (t % period) / period
    if profile == "silent" or (profile == "flaky" and phase >= 0.5):
        return None
    temp = 25 + rng.uniform(-0.5, 0.5)
    if profile == "overheat":
        temp = 30 + 65 * math.sin(math.pi * phase)
    residual = 30 + rng.uniform(-3, 3)
    if profile == "leakage" and phase < 0.2:
        residual = 450 + rng.uniform(-10, 10)
    volts = [220 + rng.uniform(-2, 2) for _ in "ABC"]
    amps = [10 + rng.uniform(-1, 1) for _ in "ABC"]
    points = [("temperature", "T1", temp), ("residual_current", "L1", residual)]
    points += [("voltage", p, v) for p, v in zip("ABC", volts, strict=True)]
    points += [("current", p, a) for p, a in zip("ABC", amps, strict=True)]
    return ";".join(f"{q}/{c}={v:.2f}" for q, c, v in points).encode()


class SimulatedModel:
    """Decodes ``quantity/channel=value;...`` frames. Pure, like every device model."""

    heartbeat_interval = None
    timeout_count = None

    def decode(self, device: str, payload: bytes, received_at: float) -> Sequence[Reading]:
        out = []
        try:
            text = payload.decode("ascii")
        except UnicodeDecodeError as e:
            raise DecodeError(f"not ASCII at offset {e.start}", payload[:32], e.start) from None
        for item in filter(None, text.split(";")):
            try:
                key, value = item.split("=")
                quantity, _, channel = key.partition("/")
                if quantity not in QUANTITIES:
                    raise SchemaError(f"unknown quantity {quantity!r}")
                out.append(Reading(device, quantity, float(value), received_at,
                                   check_channel(channel)))
            except (ValueError, SchemaError) as e:
                raise DecodeError(f"bad item {item!r}: {e}", item.encode()[:32]) from None
        return out

    def encode_command(self, device: str, command: object) -> bytes:
        raise EncodeError("simulated devices take no commands")


class SimulatorService(TimerService):
    """Ticks every ``interval`` and feeds each simulated device's frame through the hub."""

    def __init__(self, hub, name: str, options: SimulatorOptions) -> None:
        super().__init__(options.interval, self.tick)
        self.clock = hub.clock
        self.hub = hub
        self.transport = name
        self.options = options
        self.rngs: dict[str, random.Random] = {}

    def tick(self) -> None:
        now = self.hub.clock.seconds()
        for device in self.hub.registry.on_transport(self.transport):
            rng = self.rngs.setdefault(device.id, random.Random(device.id))
            data = frame(device.address_key, now, self.options.period, rng)
            if data is None:
                continue
            try:
                records = device.model.decode(device.id, data, now)
            except DecodeError as e:
                self.hub.metrics.inc("transport.decode_errors", transport=self.transport)
                _log.warn("bad frame from {device}: {error} ({hex})", device=device.id,
                          error=e, hex=e.excerpt.hex(" "))
                continue
            self.hub.ingest(device.id, records, now)


@hookimpl
def hub_register_transport_types() -> list[TransportType]:
    return [TransportType("simulator", SimulatorService, check_options,
                          "simulated detectors for demos and commissioning",
                          check_address=check_address)]


@hookimpl
def hub_register_device_models() -> list[DeviceModelType]:
    return [DeviceModelType("simulated", lambda options: SimulatedModel(),
                            description="frames of the simulator transport")]
