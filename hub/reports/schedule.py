"""Scheduled reports: daily, weekly and monthly, on the reactor's clock.

When each is made (local time, configurable under the ``rollups`` sink's ``reports``)::

    reports:
      daily: "07:00"          # yesterday's report, every day at 07:00 (null: none)
      weekly: "1 07:30"       # last week's (ISO, Monday to Monday) on Monday (1) 07:30
      monthly: "1 08:00"      # last month's on the 1st at 08:00
      formats: [pdf, xlsx]    # the documents kept (html too if wanted)
      notify:                 # pushed as a summary with a link (README "Reports")
        - {channel: ops-webhook, recipients: ["https://ops.example/hook"]}
      check_interval: 60      # s between checks for a due report
      rated: {box-1: 63}      # rated currents for the load rate (hub.analysis.load)
      power_quality:          # devices whose power quality the reports assess
        box-1: {nominal_voltage: 220, three_phase: true}

The last two are here because reports, the energy API and the schedule all read them
from these settings; their errors name the key path (``rated.box-1.current: ...``).

:func:`due` says which periods should exist by now and do not: for each kind, only the
newest whole period whose time has come (a hub that was down for a week makes last
week's report, not seven daily ones). :class:`ReportScheduler` checks every minute and
makes them one at a time through ``produce`` (a Deferred: the API service builds on a
worker thread). Periods that ended before reports were first scheduled on this hub (the
time kept in ``<state_dir>/reports/.since``) are not made: a new hub does not start by
rendering the past.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger

from hub.reports.data import KINDS, last_period, period_range
from hub.rollups.store import DAY

_log = Logger(namespace="hub.reports")

#: seconds between checks for a report that is due
CHECK_INTERVAL = 60.0
FORMAT_NAMES = ("html", "pdf", "xlsx")


def _clock_time(text: str) -> float:
    h, _, m = str(text).partition(":")
    if not (h.isdigit() and m.isdigit() and int(h) < 24 and int(m) < 60):
        raise ValueError(f"{text!r} is not a time of day HH:MM")
    return int(h) * 3600 + int(m) * 60


@dataclass(frozen=True)
class ReportSchedule:
    #: seconds after the end of the period when its report is made (None: never)
    daily: float | None = 7 * 3600
    weekly: float | None = 7.5 * 3600
    monthly: float | None = 8 * 3600
    formats: tuple[str, ...] = ("pdf", "xlsx")
    notify: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: rated currents per device (:mod:`hub.analysis.load`)
    rated: Mapping[str, Any] = field(default_factory=dict)
    #: devices assessed for power quality (:class:`hub.analysis.power_quality.Bus`)
    power_quality: Mapping[str, Any] = field(default_factory=dict)
    check_interval: float = CHECK_INTERVAL

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> ReportSchedule:
        """From configuration (see the module); ValueError says what is wrong."""
        if not m:
            return cls()
        unknown = set(m) - {"daily", "weekly", "monthly", "formats", "notify", "rated",
                            "power_quality", "check_interval"}
        if unknown:
            raise ValueError(f"unknown report keys {sorted(unknown)}")
        base = cls()
        after: dict[str, float | None] = {}
        for kind, longest in (("daily", 1), ("weekly", 7), ("monthly", 28)):
            if kind not in m:
                after[kind] = getattr(base, kind)
                continue
            v = m[kind]
            if v is None or v is False:
                after[kind] = None
                continue
            text = str(v).strip()
            day, time_text = (1, text) if kind == "daily" else text.split() if " " in text \
                else (None, None)
            if day is None or not str(day).isdigit() or not 1 <= int(day) <= longest:
                raise ValueError(f"{kind}: \"<day 1..{longest}> HH:MM\", not {v!r}"
                                 if kind != "daily" else f"daily: HH:MM, not {v!r}")
            after[kind] = (int(day) - 1) * DAY + _clock_time(time_text)
        formats = tuple(m.get("formats") or base.formats)
        bad = set(formats) - set(FORMAT_NAMES)
        if bad or not formats:
            raise ValueError(f"formats: some of {', '.join(FORMAT_NAMES)}")
        notify = []
        for n in m.get("notify") or ():
            if not isinstance(n, Mapping) or not n.get("channel") or not n.get("recipients"):
                raise ValueError("notify: [{channel: NAME, recipients: [ADDRESS, ...]}]")
            notify.append((str(n["channel"]), tuple(str(r) for r in n["recipients"])))
        from hub.analysis.load import ratings_from
        from hub.analysis.power_quality import buses_from

        rated = ratings_from(m["rated"]) if m.get("rated") is not None else {}
        buses = buses_from(dict(m["power_quality"])) if m.get("power_quality") else {}
        every = m.get("check_interval", CHECK_INTERVAL)
        if isinstance(every, bool) or not isinstance(every, int | float) or not (
                0.1 <= every <= 3600):
            raise ValueError(f"check_interval: seconds from 0.1 to 3600, not {every!r}")
        return cls(after["daily"], after["weekly"], after["monthly"], formats, tuple(notify),
                   rated, buses, float(every))

    def after(self, kind: str) -> float | None:
        return getattr(self, kind)


def due(schedule: ReportSchedule, now: float, tz_offset: int,
        have: Callable[[str, str], bool], not_before: float = 0.0) -> list[tuple[str, str]]:
    """``(kind, period)`` of the reports that should exist by ``now`` and do not
    (``have(kind, period)``): per kind, the newest whole period whose time came, unless
    it ended before ``not_before`` (when reports were first scheduled)."""
    out = []
    for kind in KINDS:
        after = schedule.after(kind)
        if after is None:
            continue
        period = last_period(kind, now, tz_offset)
        _, end = period_range(kind, period, tz_offset)
        if now < end + after:  # not time yet: the one before was due at its time
            start, end = period_range(kind, period, tz_offset)
            period = last_period(kind, start, tz_offset)
            end = start
        if end > not_before and not have(kind, period):
            out.append((kind, period))
    return out


@dataclass(frozen=True)
class Project:
    id: int
    code: str
    name: str
    devices: int = 1  # how many it has (none: no report)


class ReportScheduler(Service):
    """Makes due reports for every project, one at a time. ``produce(project, kind,
    period)`` makes and keeps the documents (value or Deferred); ``have(project, kind,
    period)`` says whether they exist; ``notify(project, kind, period, result)`` pushes
    what was made (errors there are logged, never retried into a second report)."""

    name = "reports"

    def __init__(self, clock: Any, schedule: ReportSchedule, tz_offset: int,
                 projects: Callable[[], Sequence[Project]],
                 have: Callable[[Project, str, str], bool],
                 produce: Callable[[Project, str, str], Any],
                 notify: Callable[[Project, str, str, Any], Any] | None = None,
                 interval: float = CHECK_INTERVAL, not_before: float = 0.0,
                 on_stop: Callable[[], Any] | None = None) -> None:
        self.clock = clock
        self.schedule = schedule
        self.tz_offset = tz_offset
        self.projects = projects
        self.have = have
        self.produce = produce
        self.notify = notify
        self.interval = interval
        self.not_before = not_before
        self.on_stop = on_stop
        self.made: list[tuple[str, str, str]] = []  # (project, kind, period), for tests
        self._loop: task.LoopingCall | None = None
        self._busy = False

    def startService(self) -> None:
        super().startService()
        self._loop = task.LoopingCall(self.check)
        self._loop.clock = self.clock
        # the first check a minute after the start: a hub that starts (or a test that
        # starts one) is not held up by documents of periods that ended while it was down
        self._loop.start(self.interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self.on_stop is not None:
            self.on_stop()

    def check(self) -> defer.Deferred | None:
        """Make what is due (skipped while the previous check still works)."""
        if self._busy:
            return None
        self._busy = True
        d = self._make_due()
        d.addErrback(lambda f: _log.failure("scheduled reports failed", f))
        d.addBoth(self._done)
        return d

    def _done(self, _: Any) -> None:
        self._busy = False

    @defer.inlineCallbacks
    def _make_due(self) -> Any:
        now = self.clock.seconds()
        for p in self.projects():
            if not p.devices:
                continue
            for kind, period in due(self.schedule, now, self.tz_offset,
                                    lambda k, per, p=p: self.have(p, k, per),
                                    self.not_before):
                if not self.running:
                    return
                try:
                    result = yield defer.maybeDeferred(self.produce, p, kind, period)
                except Exception:
                    _log.failure("report {kind} {period} of {project} failed; tried again "
                                 "in {s:g} s", kind=kind, period=period, project=p.code,
                                 s=self.interval)
                    continue
                self.made.append((p.code, kind, period))
                if self.notify is not None:
                    try:
                        yield defer.maybeDeferred(self.notify, p, kind, period, result)
                    except Exception:
                        _log.failure("pushing report {kind} {period} of {project} failed",
                                     kind=kind, period=period, project=p.code)
