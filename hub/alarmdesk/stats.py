"""Statistics of alarms and hazards for a project and period (pure functions over rows the
store gives; the reports turn them into documents)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile (``p`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _summary(values: list[float]) -> dict[str, Any]:
    return {"count": len(values), "median": percentile(values, 50),
            "p90": percentile(values, 90)}


def alarm_stats(rows: Iterable[tuple]) -> dict[str, Any]:
    """Rows of :meth:`hub.store.hazards.HazardTables.alarm_times`."""
    by_kind: Counter[str] = Counter()
    by_severity: Counter[str] = Counter()
    by_state: Counter[str] = Counter()
    by_code: Counter[str] = Counter()
    to_ack: list[float] = []
    to_close: list[float] = []
    for kind, severity, acked, active, first, acked_ts, cleared_ts, code in rows:
        by_kind[kind] += 1
        by_severity[severity] += 1
        by_code[code] += 1
        state = f"{'active' if active else 'cleared'}-" \
                f"{'acknowledged' if acked else 'unacknowledged'}"
        by_state[state] += 1
        if acked and acked_ts is not None:
            to_ack.append(max(0.0, acked_ts - first))
            if not active and cleared_ts is not None:
                to_close.append(max(0.0, max(acked_ts, cleared_ts) - first))
    return {"total": sum(by_kind.values()), "by_kind": dict(by_kind),
            "by_severity": dict(by_severity), "by_state": dict(by_state),
            "by_code": dict(by_code), "time_to_acknowledge": _summary(to_ack),
            "time_to_close": _summary(to_close)}


def hazard_stats(hazards: Iterable[Any], now: float) -> dict[str, Any]:
    by_state: Counter[str] = Counter()
    by_category: Counter[str] = Counter()
    by_severity: Counter[str] = Counter()
    to_close: list[float] = []
    overdue = []
    for h in hazards:
        by_state[h.state] += 1
        by_category[h.category] += 1
        by_severity[h.severity] += 1
        if h.closed_ts is not None:
            to_close.append(h.closed_ts - h.created_ts)
        if h.state != "closed" and h.deadline is not None and h.deadline < now:
            overdue.append(h.id)
    return {"total": sum(by_state.values()), "by_state": dict(by_state),
            "by_category": dict(by_category), "by_severity": dict(by_severity),
            "time_to_close": _summary(to_close), "overdue": len(overdue),
            "overdue_ids": overdue[:1000]}
