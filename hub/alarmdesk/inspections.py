"""Inspection (巡查) and hazard reminders, sans-IO: when tasks fall due, which reminders are
due, and the statistics of inspection completion.

A plan (per project) lists the items to check and how often (``every`` seconds, or one of
:data:`FREQUENCIES`); period ``k`` starts at ``start + k * every`` and its task must be
done within ``grace`` seconds of that (default: before the next one starts). A task not
done by then is ``missed``; it may still be recorded afterwards (then ``late``), and stays
counted as late in the statistics. States: ``open`` → ``done``, or ``open`` → ``missed``
→ ``done`` (late).

Hazard reminders (the policy's ``hazard_reminders``): one ``before`` the deadline, one
``after`` it once overdue by ``after`` seconds, then one every ``repeat`` seconds while it
stays open (``after-1``, ``after-2``, …). Only the latest due kind is sent: a hub that was
down for a week sends one overdue reminder, not seven. Each kind is sent at most once
(claimed in the store).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from hub.alarmdesk.stats import percentile

FREQUENCIES = {"hourly": 3600.0, "daily": 86400.0, "weekly": 7 * 86400.0}
TASK_STATES = ("open", "done", "missed")
ITEM_RESULTS = ("ok", "problem", "not-applicable")
#: most periods of one plan generated in one pass (a plan created far in the past)
CATCH_UP = 100


def period_starts(start: float, every: float, next_ts: float, now: float,
                  cap: int = CATCH_UP) -> list[float]:
    """Starts of the periods from ``next_ts`` on that have begun by ``now`` (at most
    ``cap``, the latest ones when more)."""
    if now < next_ts:
        return []
    first = max(0, math.ceil((next_ts - start) / every - 1e-9))
    last = math.floor((now - start) / every + 1e-9)
    if last < first:
        return []
    first = max(first, last - cap + 1)
    return [start + k * every for k in range(first, last + 1)]


def next_start(start: float, every: float, now: float) -> float:
    """The first period start after ``now``."""
    return start + (math.floor((now - start) / every + 1e-9) + 1) * every


def reminder_kind(deadline: float, now: float, before: float | None, after: float | None,
                  repeat: float | None) -> str | None:
    """The reminder due now for a hazard with this deadline, or None."""
    if after is not None and now >= deadline + after:
        if not repeat:
            return "after"
        n = int((now - deadline - after) // repeat)
        return "after" if n == 0 else f"after-{n}"
    if before is not None and deadline - before <= now < deadline:
        return "before"
    return None


def reminder_step(kind: str) -> int:
    """The (negative) step number a reminder's notification is claimed under."""
    if kind == "before":
        return -1
    if kind == "after":
        return -2
    return -2 - int(kind.split("-", 1)[1])


def inspection_stats(rows: Iterable[tuple], now: float) -> dict[str, Any]:
    """Rows ``(state, late, due_ts, deadline_ts, done_ts, problems)`` of the tasks due in
    the period. ``completion`` is done / (tasks whose time is up or that are done)."""
    by_state: Counter[str] = Counter()
    late = problems = 0
    to_done: list[float] = []
    for state, was_late, due, _deadline, done_ts, found in rows:
        by_state[state] += 1
        late += bool(was_late)
        problems += int(found or 0)
        if state == "done" and done_ts is not None:
            to_done.append(max(0.0, done_ts - due))
    done = by_state["done"]
    settled = done + by_state["missed"]
    return {"total": sum(by_state.values()), "by_state": dict(by_state), "done": done,
            "done_late": late, "missed": by_state["missed"], "open": by_state["open"],
            "completion": round(done / settled, 4) if settled else None,
            "on_time": round((done - late) / settled, 4) if settled else None,
            "problems_found": problems,
            "time_to_done": {"count": len(to_done), "median": percentile(to_done, 50),
                             "p90": percentile(to_done, 90)}}
