"""A test transport that streams a fixed, deterministic set of readings and survives kill -9.

Each configured device on a ``burst`` transport sends readings ``0 .. per_device - 1`` of
``voltage``/``A``: reading ``i`` has the time ``t0 + i * step`` and the value
``200 + i % 400 / 10``. Every ``interval`` seconds each device sends its next ``per_tick``
readings. On start a device resumes after the newest reading the journal holds for it, so a
hub killed mid-stream and started again completes exactly the same set: the journal's
readings are then the expected content of any sink.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.application.internet import TimerService

from hub import hookimpl
from hub.contracts import TransportType
from hub.model import Reading
from hub.validate import Section, integer, number


@dataclass(frozen=True)
class BurstOptions:
    per_device: int
    per_tick: int
    interval: float
    t0: float
    step: float


def burst_options(s: Section) -> BurstOptions:
    opts = BurstOptions(
        per_device=s.get("per_device", integer(1, 10_000_000)),
        per_tick=s.get("per_tick", integer(1, 100_000), 10),
        interval=s.get("interval", number(0.001, 60), 0.05),
        t0=s.get("t0", number(0), 1_767_225_600.0),
        step=s.get("step", number(0.001, 3600), 0.01),
    )
    s.finish()
    return opts


def reading(device: str, i: int, opts: BurstOptions) -> Reading:
    return Reading(device, "voltage", 200 + i % 400 / 10, opts.t0 + i * opts.step, "A")


class Burst(TimerService):
    def __init__(self, hub, name: str, options: BurstOptions) -> None:
        super().__init__(options.interval, self.tick)
        self.clock = hub.clock
        self.hub, self.transport, self.opts = hub, name, options
        self.next: dict[str, int] = {}

    def startService(self) -> None:
        for device in self.hub.registry.on_transport(self.transport):
            latest = self.hub.journal.latest(device.id, "voltage")
            done = round((latest[0].ts - self.opts.t0) / self.opts.step) + 1 if latest else 0
            self.next[device.id] = done
        super().startService()

    def tick(self) -> None:
        opts = self.opts
        for device, i in self.next.items():
            if i >= opts.per_device:
                continue
            upto = min(i + opts.per_tick, opts.per_device)
            self.hub.ingest(device, [reading(device, k, opts) for k in range(i, upto)])
            self.next[device] = upto


@hookimpl
def hub_register_transport_types():
    return [TransportType("burst", Burst, burst_options)]
