"""In-process counters and gauges.

Everything the hub counts instead of crashing on (refused devices, malformed frames, failing
observers, journal pressure) lands here under a dotted name plus optional labels. The API and
exporters read :meth:`Metrics.snapshot`; tests read single values with :meth:`Metrics.value`.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence

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


class Histogram:
    """A distribution (a round trip, an alarm's latency) as counts per bucket under one
    metric name of ``metrics``: label ``le`` is the bucket's upper bound, ``+Inf`` beyond
    the last; counts are per bucket, not cumulative.

    ``quantiles`` maps a quantile to the name of a gauge kept at that quantile's bucket
    bound (the largest value seen when it lies beyond the last bound; JSON has no
    infinity), so ``hub metrics`` shows p50/p99 directly. ``observe`` is cheap enough for a
    per-message path when no quantile gauges are kept.
    """

    def __init__(self, metrics: Metrics, name: str, bounds: Sequence[float],
                 quantiles: Mapping[float, str] | None = None, **labels: str) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.max = 0.0
        self._counters = metrics._counters
        self._gauges = metrics._gauges
        self._keys = [(name, _labels({**labels, "le": f"{b:g}"})) for b in self.bounds]
        self._keys.append((name, _labels({**labels, "le": "+Inf"})))
        self._quantiles = [(q, (gauge, _labels(labels))) for q, gauge in
                           (quantiles or {}).items()]

    def observe(self, value: float) -> None:
        i = bisect_left(self.bounds, value)
        self.counts[i] += 1
        self._counters[self._keys[i]] += 1
        if value > self.max:
            self.max = value
        for q, key in self._quantiles:
            self._gauges[key] = self.quantile(q)

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the ``q`` quantile; None before any value."""
        total = sum(self.counts)
        if not total:
            return None
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= q * total:
                return self.bounds[i] if i < len(self.bounds) else self.max
        return self.max


def bucket_quantile(counts: Mapping[float, float], q: float) -> float:
    """The upper bound of the bucket holding the ``q`` quantile, from a histogram's counts
    per bucket bound as ``hub metrics --json`` shows them (``+Inf`` as ``math.inf``);
    NaN when empty. For tools that read a running hub's metrics."""
    total = sum(counts.values())
    seen = 0.0
    for le in sorted(counts):
        seen += counts[le]
        if total and seen >= q * total:
            return le
    return math.nan
