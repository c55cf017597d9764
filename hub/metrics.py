"""In-process counters and gauges.

Everything the hub counts instead of crashing on (refused devices, malformed frames, failing
observers, journal pressure) lands here under a dotted name plus optional labels. The API and
exporters read :meth:`Metrics.snapshot`; tests read single values with :meth:`Metrics.value`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

Labels = tuple[tuple[str, str], ...]


def _labels(labels: dict[str, str]) -> Labels:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


class Metrics:
    """A registry of counters (only go up) and gauges (set to a value)."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, Labels], float] = defaultdict(float)
        self._gauges: dict[tuple[str, Labels], float] = {}

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        self._counters[(name, _labels(labels))] += amount

    def set(self, name: str, value: float, **labels: str) -> None:
        self._gauges[(name, _labels(labels))] = value

    def value(self, name: str, **labels: str) -> float:
        """The current value; with no labels given, the sum over every label set."""
        if labels:
            key = (name, _labels(labels))
            return self._counters.get(key, self._gauges.get(key, 0.0))
        return sum(v for (n, _), v in self._items() if n == name)

    def _items(self) -> Iterator[tuple[tuple[str, Labels], float]]:
        yield from self._counters.items()
        yield from self._gauges.items()

    def snapshot(self) -> list[dict]:
        """Every metric as ``{"name", "labels", "value", "type"}``, sorted by name."""
        out = [
            {"name": n, "labels": dict(lb), "value": v, "type": "counter"}
            for (n, lb), v in self._counters.items()
        ]
        out += [
            {"name": n, "labels": dict(lb), "value": v, "type": "gauge"}
            for (n, lb), v in self._gauges.items()
        ]
        return sorted(out, key=lambda m: (m["name"], sorted(m["labels"].items())))
