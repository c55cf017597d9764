"""Inspection (巡查) and hazard reminders, sans-IO: when tasks fall due, which reminders are
due, and the statistics of inspection completion.

A plan (per project) lists the items to check and how often (``every`` seconds, or one of
:data:`FREQUENCIES`); period ``k`` starts at ``start + k * every`` and its task must be
done within ``grace`` seconds of that (default: before the next one starts). A
``monthly`` plan runs by the calendar instead (:func:`month_start`): period ``k`` starts
``k`` months after ``start`` at the same local time and day of the month, the day clamped
to the month's length (a plan starting on the 31st runs on the 30th in April, the 28th or
29th in February, and on the 31st again in May), local time being the plan's fixed UTC
offset (the project policy's ``utc_offset_minutes`` when it was made, as the reminders'
times). A task not
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

import calendar
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
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


MONTHLY = "monthly"
#: ``every`` of a monthly plan as the API shows it: a nominal month (the calendar decides)
NOMINAL_MONTH = 30 * 86400.0


def month_start(start: float, k: int, offset_minutes: int) -> float:
    """The start of period ``k`` of a monthly plan beginning at ``start``: ``k`` calendar
    months later at the same local time of day, on the same day of the month or the
    month's last day when it is shorter."""
    shift = timedelta(minutes=offset_minutes)
    local = datetime.fromtimestamp(start, UTC) + shift
    months = local.year * 12 + local.month - 1 + k
    year, month = divmod(months, 12)
    day = min(local.day, calendar.monthrange(year, month + 1)[1])
    return (local.replace(year=year, month=month + 1, day=day) - shift).timestamp()


def month_index(start: float, ts: float, offset_minutes: int) -> int:
    """The last period ``k`` of a monthly plan that has begun by ``ts`` (-1 before the
    first)."""
    shift = timedelta(minutes=offset_minutes)
    a = datetime.fromtimestamp(start, UTC) + shift
    b = datetime.fromtimestamp(ts, UTC) + shift
    k = (b.year - a.year) * 12 + b.month - a.month
    while k >= 0 and month_start(start, k, offset_minutes) > ts:
        k -= 1
    while month_start(start, k + 1, offset_minutes) <= ts:
        k += 1
    return max(k, -1)


def plan_periods(plan: Mapping[str, Any], now: float, cap: int = CATCH_UP
                 ) -> list[tuple[float, float]]:
    """``(start, deadline)`` of the plan's periods from its ``next_ts`` on that have begun
    by ``now`` (at most ``cap``, the latest ones). A monthly plan's deadline without a
    grace of its own (``grace`` 0) is the next period's start."""
    start, next_ts = plan["start_ts"], plan["next_ts"]
    if plan.get("frequency") != MONTHLY:
        return [(t, t + plan["grace"])
                for t in period_starts(start, plan["every"], next_ts, now, cap)]
    if now < next_ts:
        return []
    offset = plan["utc_offset_minutes"]
    first = month_index(start, next_ts - 1e-6, offset) + 1
    last = month_index(start, now, offset)
    first = max(first, last - cap + 1, 0)
    out = []
    for k in range(first, last + 1):
        t = month_start(start, k, offset)
        end = t + plan["grace"] if plan["grace"] else month_start(start, k + 1, offset)
        out.append((t, end))
    return out


def plan_next_start(plan: Mapping[str, Any], now: float) -> float:
    """The plan's first period start after ``now``."""
    if plan.get("frequency") != MONTHLY:
        return next_start(plan["start_ts"], plan["every"], now)
    offset = plan["utc_offset_minutes"]
    return month_start(plan["start_ts"], month_index(plan["start_ts"], now, offset) + 1,
                       offset)


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
