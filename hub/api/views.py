"""Devices as the API shows them (configuration and store side by side), records as JSON, and
the downsampling of history."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.analysis.load import rating_text
from hub.api.schemas import (
    DeviceSettingsOut,
    EventOut,
    HeartbeatOut,
    HistoryPoint,
    ReadingOut,
    ThresholdOut,
)
from hub.model import QUANTITIES, Event, Reading
from hub.store import Device as StoredDevice

if TYPE_CHECKING:
    from hub.core import Hub


@dataclass(frozen=True)
class DeviceView:
    id: str
    name: str
    project: str
    model: str
    transport: str | None
    location: str
    source: str  # "config" (YAML, read-only here) or "api" (the platform store)
    address: object = None
    settings: dict | None = None  # source api: as stored


def all_devices(hub: Hub, stored: Iterable[StoredDevice]) -> dict[str, DeviceView]:
    """Every device by id: the configuration's (``source: config``, including devices
    auto-provisioned at run time) and the platform store's (``source: api``); a YAML
    device wins over a stored one of the same id (the hub refuses to run such a stored
    device)."""
    out: dict[str, DeviceView] = {}
    for d in hub.registry:
        out[d.id] = DeviceView(d.id, d.name, d.project, d.model_name, d.transport, d.location,
                               "config", d.address)
    yaml_ids = {d.id for d in hub.config.devices}
    for s in stored:
        if s.id not in yaml_ids:
            out[s.id] = DeviceView(s.id, s.name, s.project, s.model, s.transport, s.location,
                                   "api", s.address, s.settings or {})
    return out


class DeviceIndex:
    """:func:`all_devices` by id and by project, each project's list sorted by id: a page
    of one project costs the page, not the whole fleet."""

    def __init__(self, devices: dict[str, DeviceView]) -> None:
        self.by_id = devices
        self.ordered = sorted(devices.values(), key=lambda d: d.id)
        self.by_project: dict[str, list[DeviceView]] = {}
        for d in self.ordered:
            self.by_project.setdefault(d.project, []).append(d)


def settings_out(hub: Hub, d: DeviceView) -> DeviceSettingsOut:
    """The settings the running device has (the registry's), and the stored ones."""
    running = hub.registry.get(d.id) if d.id in hub.registry else None
    if running is None:
        return DeviceSettingsOut(running=False, alarms={}, heartbeat=None, stored=d.settings)
    return DeviceSettingsOut(
        running=True,
        alarms={rule: ThresholdOut(alarm=t.alarm, warning=t.warning, hysteresis=t.hysteresis,
                                   delay=t.delay, clear_delay=t.clear_delay)
                for rule, t in sorted(running.alarms.items()) if t.enabled},
        heartbeat=HeartbeatOut(interval=running.heartbeat_interval,
                               timeout_count=running.timeout_count),
        rated=None if running.rated is None else rating_text(running.rated),
        stored=d.settings)


def active_by_device(hub: Hub) -> dict[str, list[Event]]:
    """Raised alarms and faults (the alarm engine's and presence's offline), by device."""
    out: dict[str, list[Event]] = {}
    for e in [*hub.alarms.active(), *hub.presence.offline()]:
        out.setdefault(e.device, []).append(e)
    return out


def event_out(e: Event, seq: int | None = None) -> EventOut:
    return EventOut(seq=seq, id=e.id, device=e.device, kind=e.kind.value, code=e.code,
                    state=e.state.value, level=e.level.value, ts=e.ts, channel=e.channel,
                    value=_finite(e.value), set_point=_finite(e.set_point), message=e.message)


def reading_out(r: Reading) -> ReadingOut:
    q = QUANTITIES.get(r.quantity)
    return ReadingOut(quantity=r.quantity, channel=r.channel, value=_finite(r.value), ts=r.ts,
                      quality=r.quality.value, unit=q.unit if q else "")


def _finite(v: float | None) -> float | None:
    return v if v is None or math.isfinite(v) else None


def downsample(readings: Sequence[Reading], since: float, until: float,
               points: int) -> tuple[float, list[HistoryPoint]]:
    """Readings into at most ``points`` buckets of equal width over ``since..until``:
    min, max, average and count per bucket (empty buckets left out). With no more readings
    than ``points``, each reading is its own point (bucket width 0)."""
    if len(readings) <= points:
        return 0.0, [HistoryPoint(ts=r.ts, min=_finite(r.value), max=_finite(r.value),
                                  avg=_finite(r.value), n=1) for r in readings]
    width = max((until - since) / points, 1e-6)
    buckets: dict[int, list[float]] = {}
    for r in readings:
        v = r.value
        if v is None or not math.isfinite(v):
            continue
        i = min(int((r.ts - since) / width), points - 1)
        b = buckets.get(i)
        if b is None:
            buckets[i] = [v, v, v, 1]
        else:
            if v < b[0]:
                b[0] = v
            if v > b[1]:
                b[1] = v
            b[2] += v
            b[3] += 1
    return width, [HistoryPoint(ts=since + i * width, min=b[0], max=b[1], avg=b[2] / b[3],
                                n=int(b[3])) for i, b in sorted(buckets.items())]
