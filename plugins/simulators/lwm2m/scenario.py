"""What a simulated detector measures at a time ``t``: pure functions, no clock.

``t`` is seconds since the endpoint started (the caller passes it). Values wobble slowly and
deterministically around nominal (a sine of a 47 s period, with a phase per endpoint and
channel), so two runs with the same seed produce the same figures, and every sample differs
from the previous one (an observed resource notifies at each sample, as a real detector
reporting at a fixed period does).

Scenarios:

* ``normal``: values near nominal (220 V, 10 A, 25 °C, 30 mA residual current).
* ``overheat``: temperature T1 (``/3303/0``) ramps from 30 °C to :data:`OVERHEAT_PEAK`
  (95 °C, above the 80 °C alarm threshold), holds, and ramps back (:class:`Ramp`).
* ``leakage``: residual current (``/3317/10``) ramps from 30 mA to :data:`LEAKAGE_PEAK`
  (450 mA, above the 300 mA threshold), holds, and ramps back.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

__all__ = ["LEAKAGE_PEAK", "OVERHEAT_PEAK", "SCENARIOS", "Ramp", "Scenario"]

SCENARIOS = ("normal", "overheat", "leakage")

#: quantity → (nominal, swing): the value wobbles within nominal ± swing
NOMINAL: dict[str, tuple[float, float]] = {
    "temperature": (25.0, 0.5),
    "voltage": (220.0, 2.0),
    "current": (10.0, 1.0),
    "residual_current": (30.0, 3.0),
    "battery": (90.0, 0.0),
}
OVERHEAT_BASE, OVERHEAT_PEAK = 30.0, 95.0  # °C
LEAKAGE_BASE, LEAKAGE_PEAK = 30.0, 450.0  # mA
ENERGY_START = 12_000_000.0  # Wh at t = 0
_WOBBLE_PERIOD = 47.0  # s; unrelated to any report interval


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


@dataclass(frozen=True)
class Scenario:
    """The values of one scenario; ``seed`` (e.g. the IMEI) decorrelates endpoints."""

    name: str = "normal"
    ramp: Ramp = Ramp()
    seed: str = ""

    def __post_init__(self) -> None:
        if self.name not in SCENARIOS:
            raise ValueError(f"{self.name!r} is not a scenario; one of {', '.join(SCENARIOS)}")

    def _wobble(self, key: str, t: float) -> float:
        phase = zlib.crc32(f"{self.seed}/{key}".encode()) / 2**32
        return math.sin(2 * math.pi * (t / _WOBBLE_PERIOD + phase))

    def nominal(self, quantity: str, channel: str, t: float) -> float:
        nominal, swing = NOMINAL[quantity]
        return nominal + swing * self._wobble(f"{quantity}/{channel}", t)

    def temperature(self, channel: int, t: float) -> float:
        if self.name == "overheat" and channel == 0:
            return OVERHEAT_BASE + (OVERHEAT_PEAK - OVERHEAT_BASE) * self.ramp.level(t)
        return self.nominal("temperature", str(channel), t)

    def residual_current(self, t: float) -> float:
        """mA, with the breaker closed."""
        if self.name == "leakage":
            return LEAKAGE_BASE + (LEAKAGE_PEAK - LEAKAGE_BASE) * self.ramp.level(t)
        return self.nominal("residual_current", "L1", t)

    def voltage(self, phase: int, t: float) -> float:
        return self.nominal("voltage", "ABC"[phase], t)

    def current(self, phase: int, t: float) -> float:
        """A, with the breaker closed."""
        return self.nominal("current", "ABC"[phase], t)
