"""Waves of a campaign, without I/O: who goes in which wave, and what a wave's outcome
asks of the campaign.

The first wave is the canary (``canary`` devices), the rest go ``batch`` at a time. A wave
starts only when the one before it has ended (every device in a final phase) and its failure
rate stayed within the bound. The rate is failures (failed or timed out) over the wave's
size, counted as devices end: once it exceeds the bound the campaign pauses at once (devices
already in the wave finish, no further wave starts) rather than at the wave's end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

__all__ = ["FAILURES", "plan_waves", "verdict"]

#: final phases that count against the failure bound
FAILURES = frozenset({"failed", "timed_out"})
_FINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled"})


def plan_waves(devices: Sequence[str], canary: int, batch: int) -> list[list[str]]:
    """``devices`` cut into the canary wave and waves of ``batch``."""
    if canary < 0 or batch < 1:
        raise ValueError("canary must be 0 or more and batch at least 1")
    waves: list[list[str]] = []
    rest = list(devices)
    if canary:
        waves.append(rest[:canary])
        rest = rest[canary:]
    while rest:
        waves.append(rest[:batch])
        rest = rest[batch:]
    return waves


def verdict(phases: Iterable[str], failure_bound: float,
            bound_applies: bool = True) -> Literal["running", "pause", "next"]:
    """What the phases of one wave's devices ask: ``pause`` (the failure rate exceeds
    ``failure_bound``, a share 0..1), ``next`` (every device ended within the bound) or
    ``running``."""
    phases = list(phases)
    if not phases:
        return "next"
    failed = sum(1 for p in phases if p in FAILURES)
    if bound_applies and failed / len(phases) > failure_bound:
        return "pause"
    if all(p in _FINAL for p in phases):
        return "next"
    return "running"
