"""What a simulated detector measures at a time ``t``: the one scenario engine of every
simulator (the demo transport, ``hub simulate dtu``, ``hub simulate lwm2m`` and ``hub
simulate mqtt``). Sans-IO: time in, values out; nothing here reads a clock or a socket.

A :class:`Scenario` is the normal values of a detector (:data:`NOMINAL`: each quantity's
nominal value and the most it swings either way, plus energy counters that only grow) with
zero or more :class:`Episode` s on top, and optionally an outage (while its shape is up, the
device sends nothing). An episode moves one quantity on some channels from its normal (or a
fixed base) value to a peak, following a :class:`Shape`: a number from 0 (normal) to 1
(peak) at each ``t``.

Noise is the caller's choice, passed as ``jitter`` in -1..1 (the share of the swing):

* a seeded slow :func:`wobble` (a sine with a phase per key): the same seed answers the same
  values at the same ``t`` and every sample differs from the previous one (the DTU slaves
  and the LwM2M endpoints; :meth:`Scenario.value` wobbles on its own ``seed`` when no
  ``jitter`` is given);
* draws from a seeded ``random.Random`` (the demo transport and the MQTT devices).

Named scenarios (:meth:`Scenario.periodic` gives each its usual shape over ``period``):

* ``normal``: values near nominal (220 V, 10 A, 25 °C, 30 mA residual current).
* ``overheat``: temperature T1 from 30 °C up to 95 °C (past the 80 °C alarm) and back:
  ``30 + 65 sin(π phase)`` per period, or a :class:`Ramp`.
* ``leakage``: residual current (every channel) from normal up to 450 ± 10 mA (past the
  300 mA alarm): for the first fifth of each period, or a :class:`Ramp`.
* ``flaky``: normal values, and silent for the second half of each period.
* ``silent``: never reports.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "DEVICE_SET_POINTS",
    "ENERGY",
    "LEAKAGE_PEAK",
    "NOMINAL",
    "OVERHEAT_BASE",
    "OVERHEAT_PEAK",
    "SCENARIOS",
    "Always",
    "Episode",
    "HalfSine",
    "Pulse",
    "Ramp",
    "Scenario",
    "Shape",
    "Wave",
    "leakage",
    "overheat",
    "wobble",
    "wobble_phase",
]

SCENARIOS = ("normal", "overheat", "leakage", "flaky", "silent")

#: Canonical nominal value and swing (the most it wobbles either way) per quantity;
#: quantities not listed read 0. ``battery_level`` (%) is no hub quantity: LwM2M's /3/0/9.
NOMINAL: dict[str, tuple[float, float]] = {
    "voltage": (220.0, 2.0),
    "current": (10.0, 1.0),
    "temperature": (25.0, 0.5),
    "residual_current": (30.0, 3.0),
    "residual_current_full_wave": (32.0, 3.0),
    "resistive_leakage_current": (10.0, 1.0),
    "active_power": (6400.0, 200.0),
    "reactive_power": (1300.0, 100.0),
    "apparent_power": (6600.0, 200.0),
    "power_factor": (0.97, 0.01),
    "frequency": (50.0, 0.02),
    "voltage_unbalance": (1.0, 0.2),
    "current_unbalance": (3.0, 0.5),
    "current_thd": (4.0, 0.5),
    "voltage_thd": (2.0, 0.3),
    "signal_strength": (-75.0, 3.0),
    "battery_voltage": (3.6, 0.05),
    "battery_level": (90.0, 0.0),
}

#: Energy counters only go up: (value at t = 0, growth per hour) in the canonical unit.
ENERGY: dict[str, tuple[float, float]] = {
    "active_energy": (12000.0, 6.4),
    "reactive_energy": (2400.0, 1.3),
}

#: A simulated detector's own set points (canonical units), for the alarm flags it raises
#: itself, until the hub writes others.
DEVICE_SET_POINTS: dict[str, float] = {
    "temperature": 80.0,
    "residual_current": 300.0,
    "overvoltage": 264.0,
    "undervoltage": 187.0,
    "overcurrent": 32.0,
}

OVERHEAT_BASE, OVERHEAT_PEAK = 30.0, 95.0  # °C
LEAKAGE_PEAK, LEAKAGE_SWING = 450.0, 10.0  # mA
LEAKAGE_SHARE = 0.2  # of each period, for the periodic leakage
WOBBLE_PERIOD = 47.0  # s; slow, and unrelated to any poll or report interval


def wobble_phase(key: str) -> float:
    """A phase in 0..1 fixed by ``key`` (e.g. ``"<seed>/temperature/T1"``)."""
    return zlib.crc32(key.encode()) / 2**32


def wobble(phase: float, t: float) -> float:
    """A slow sine in -1..1 at ``t`` with ``phase`` (from :func:`wobble_phase`)."""
    return math.sin(2 * math.pi * (t / WOBBLE_PERIOD + phase))


# ---------------------------------------------------------------------------- shapes


class Shape(Protocol):
    """How far an episode is at ``t``: 0 normal, 1 at its peak."""

    def level(self, t: float) -> float: ...


@dataclass(frozen=True)
class HalfSine:
    """``sin(π phase)`` over each ``period``: up from 0 to 1 at mid-period and back."""

    period: float

    def level(self, t: float) -> float:
        return math.sin(math.pi * ((t % self.period) / self.period))


@dataclass(frozen=True)
class Pulse:
    """1 while ``start ≤ phase < start + share`` of each ``period``, else 0."""

    period: float
    share: float
    start: float = 0.0

    def level(self, t: float) -> float:
        phase = (t % self.period) / self.period
        return 1.0 if self.start <= phase < self.start + self.share else 0.0


@dataclass(frozen=True)
class Wave:
    """``(sin(2π (t / period + offset)) + 1) / 2``: a smooth swing 0..1..0 per ``period``."""

    period: float
    offset: float = 0.0

    def level(self, t: float) -> float:
        return (math.sin(2 * math.pi * ((t / self.period) + self.offset)) + 1) / 2


@dataclass(frozen=True)
class Always:
    """Always at its peak."""

    def level(self, t: float) -> float:
        return 1.0


@dataclass(frozen=True)
class Ramp:
    """An excursion: after ``delay`` s the value climbs for ``up`` s, stays at its peak for
    ``hold`` s and falls back for ``down`` s; it starts again every ``every`` s (0: once)."""

    delay: float = 10.0
    up: float = 30.0
    hold: float = 30.0
    down: float = 30.0
    every: float = 300.0

    def __post_init__(self) -> None:
        if min(self.delay, self.up, self.hold, self.down, self.every) < 0:
            raise ValueError("ramp times must not be negative")
        if self.every and self.every < self.delay + self.up + self.hold + self.down:
            raise ValueError(f"ramp repeat period {self.every:g} s is shorter than the "
                             f"excursion ({self.delay + self.up + self.hold + self.down:g} s)")

    def level(self, t: float) -> float:
        """0 at base, 1 at the peak; linear in between."""
        if self.every:
            t %= self.every
        t -= self.delay
        if t < 0:
            return 0.0
        if t < self.up:
            return t / self.up
        t -= self.up
        if t < self.hold:
            return 1.0
        t -= self.hold
        if t < self.down:
            return 1.0 - t / self.down
        return 0.0


# ---------------------------------------------------------------------------- episodes


@dataclass(frozen=True)
class Episode:
    """``quantity`` on ``channels`` (``None``: every channel) follows ``shape`` up to
    ``peak`` (± ``swing`` of noise). From ``base`` when given (a fixed start, no noise:
    ``base + (peak - base) · level``), else from the normal value (a blend of the normal
    value and the noisy peak)."""

    quantity: str
    shape: Shape
    peak: float
    base: float | None = None
    swing: float = 0.0
    channels: frozenset[str] | None = None

    def value(self, normal: float, t: float, jitter: float) -> float:
        level = self.shape.level(t)
        if self.base is not None:
            return self.base + (self.peak - self.base) * level + self.swing * jitter
        # (1 - level)·a + level·b is exactly a at 0 and exactly b at 1 (a pulse's two values)
        return (1 - level) * normal + level * (self.peak + self.swing * jitter)


def overheat(shape: Shape, channel: str = "T1", base: float = OVERHEAT_BASE,
             peak: float = OVERHEAT_PEAK) -> Episode:
    """Temperature ``channel`` from ``base`` to ``peak`` °C along ``shape``."""
    return Episode("temperature", shape, peak, base=base, channels=frozenset((channel,)))


def leakage(shape: Shape, peak: float = LEAKAGE_PEAK, swing: float = LEAKAGE_SWING,
            base: float | None = None) -> Episode:
    """Residual current (every channel) from normal (or ``base``) to ``peak`` mA."""
    return Episode("residual_current", shape, peak, base=base, swing=swing)


def _preset(name: str, shape: Shape) -> tuple[tuple[Episode, ...], Shape | None]:
    if name == "overheat":
        return (overheat(shape),), None
    if name == "leakage":
        return (leakage(shape),), None
    if name == "flaky":
        return (), shape
    if name == "silent":
        return (), Always()
    return (), None


# ---------------------------------------------------------------------------- scenario


@dataclass(frozen=True)
class Scenario:
    """The values of one named scenario (see the module docstring) whose episode follows
    ``shape``; ``seed`` (e.g. the IMEI) decorrelates the wobble of devices. ``episodes``
    and ``outage`` replace the name's own when given (a simulator with its own peaks)."""

    name: str = "normal"
    shape: Shape = Ramp()
    seed: str = ""
    episodes: tuple[Episode, ...] | None = None
    outage: Shape | None = None
    nominal: Mapping[str, tuple[float, float]] = field(default_factory=lambda: NOMINAL)

    def __post_init__(self) -> None:
        if self.name not in SCENARIOS:
            raise ValueError(f"{self.name!r} is not a scenario; one of {', '.join(SCENARIOS)}")
        episodes, outage = _preset(self.name, self.shape)
        if self.episodes is None:
            object.__setattr__(self, "episodes", episodes)
        if self.outage is None:
            object.__setattr__(self, "outage", outage)
        by_quantity: dict[str, tuple[Episode, ...]] = {}
        for ep in self.episodes or ():
            by_quantity[ep.quantity] = (*by_quantity.get(ep.quantity, ()), ep)
        object.__setattr__(self, "_by_quantity", by_quantity)
        object.__setattr__(self, "_phases", {})

    @classmethod
    def periodic(cls, name: str, period: float, seed: str = "") -> Scenario:
        """``name`` with its usual shape over each ``period`` s: overheat a half sine,
        leakage the first fifth, flaky silent for the second half."""
        if not period > 0:
            raise ValueError(f"period must be positive, got {period!r}")
        shape: Shape = {"overheat": HalfSine(period),
                        "leakage": Pulse(period, LEAKAGE_SHARE),
                        "flaky": Pulse(period, 0.5, 0.5)}.get(name, Always())
        return cls(name, shape, seed)

    def normal(self, quantity: str, t: float, jitter: float = 0.0) -> float:
        """The value of ``quantity`` with no episode: nominal ± swing × ``jitter``, or an
        energy counter's reading at ``t``."""
        energy = ENERGY.get(quantity)
        if energy is not None:
            return energy[0] + energy[1] * t / 3600
        nominal, swing = self.nominal.get(quantity, (0.0, 0.0))
        return nominal + swing * jitter

    def jitter(self, quantity: str, channel: str, t: float) -> float:
        """The scenario's own noise: a wobble keyed by its seed, quantity and channel."""
        key = f"{quantity}/{channel}"
        phase = self._phases.get(key)  # type: ignore[attr-defined]
        if phase is None:
            phase = self._phases[key] = wobble_phase(f"{self.seed}/{key}")  # type: ignore[attr-defined]
        return wobble(phase, t)

    def value(self, quantity: str, channel: str, t: float,
              jitter: float | None = None) -> float:
        """The canonical value of ``quantity``/``channel`` at ``t``; ``jitter`` in -1..1
        picks a value within the quantity's swing (default: :meth:`jitter`)."""
        if jitter is None:
            jitter = self.jitter(quantity, channel, t)
        for ep in self._by_quantity.get(quantity, ()):  # type: ignore[attr-defined]
            if ep.channels is None or channel in ep.channels:
                return ep.value(self.normal(quantity, t, jitter), t, jitter)
        return self.normal(quantity, t, jitter)

    def silent(self, t: float) -> bool:
        """Whether the device sends nothing at ``t`` (``flaky``, ``silent``)."""
        return self.outage is not None and self.outage.level(t) > 0
