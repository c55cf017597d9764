"""Built-in sink ``rollups``: hourly and daily aggregates of every series, kept for years
(:mod:`hub.rollups`; README "Rollups, safety grading and reports")::

    sinks:
      rollups:                       # on by default with these options; to change them,
        type: rollups                # configure it; `enabled: false` turns it off
        # process: true              # fold in a process of its own (README "Rollups")
        # poll_interval: 0.2         # s between its looks at the journal
        # stop_timeout: 30           # s it gets to write and exit when the hub stops
        # worker: thread             # process: false: the fold's thread (inline: reactor)
        # path: rollups.sqlite       # relative to state_dir (the default)
        tz_offset_hours: 8           # days start at local midnight (fixed at creation)
        hourly_days: 800             # hourly buckets kept this long
        daily_days: 3660             # daily buckets kept this long
        grading: {bands: [90, 75, 60]}   # README "Safety grading": any weight or band
        tou:                         # time-of-use periods (local time) and tariffs
          periods: [{start: "10:00", end: "15:00", name: 峰},
                    {start: "23:00", end: "07:00", name: 谷}]
          tariffs: {峰: 1.05, 平: 0.65, 谷: 0.30}
        reports:                     # scheduled reports (hub.reports.schedule)
          daily: "07:00"             # yesterday's, at 07:00 local (null: none)
          weekly: "1 07:30"          # last week's, Monday 07:30
          monthly: "1 08:00"         # last month's, on the 1st at 08:00
          formats: [pdf, xlsx]
          notify: [{channel: ops, recipients: ["13800138000"]}]  # api.notify.channels
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hub import hookimpl
from hub.analysis.energy import TouSchedule
from hub.analysis.grading import GradingScheme
from hub.contracts import SinkType
from hub.reports.schedule import ReportSchedule
from hub.rollups import RollupOptions, RollupSink
from hub.validate import Invalid, Section, boolean, choice, integer, number, string


def _checked(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise Invalid("a mapping")
        try:
            parse(value)
        except (ValueError, TypeError, KeyError) as e:
            raise Invalid(str(e)) from None
        return dict(value)
    return check


def check_options(s: Section) -> RollupOptions:
    opts = RollupOptions(
        enabled=s.get("enabled", boolean, True),
        worker=s.get("worker", choice("thread", "inline"), "thread"),
        process=s.get("process", boolean, True),
        poll_interval=s.get("poll_interval", number(0.01, 60, "s"), 0.2),
        stop_timeout=s.get("stop_timeout", number(1, 3600, "s"), 30.0),
        path=s.get("path", string(r".+", "a file path"), None),
        tz_offset_hours=s.get("tz_offset_hours", number(-12, 14, "h"), 8.0),
        hourly_days=s.get("hourly_days", number(731, None, "days"), 800.0),
        daily_days=s.get("daily_days", number(731, None, "days"), 3660.0),
        batch_size=s.get("batch_size", integer(1, 1_000_000), 5000),
        flush_interval=s.get("flush_interval", number(0.01, 3600, "s"), 1.0),
        max_lag_seconds=s.get("max_lag_seconds", number(1, None, "s"), 300.0),
        retry_initial=s.get("retry_initial", number(0.01, 3600, "s"), 1.0),
        retry_max=s.get("retry_max", number(0.01, 86400, "s"), 60.0),
        grading=s.get("grading", _checked(GradingScheme.from_mapping), None),
        tou=s.get("tou", _checked(TouSchedule.from_mapping), None),
        reports=s.get("reports", _checked(ReportSchedule.from_mapping), None),
    )
    s.finish()
    return opts


@hookimpl
def hub_register_sink_types() -> list[SinkType]:
    return [SinkType("rollups", RollupSink, check_options,
                     "hourly and daily aggregates and energy, kept for years")]
