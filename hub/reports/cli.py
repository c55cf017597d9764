"""``hub report daily|weekly|monthly --project CODE [--period P] [--format pdf] [-o FILE]``:
the same document the API serves, from the journal (read-only) and the rollups, while the
hub runs or after it stopped. The period: ``YYYY-MM-DD``, ``YYYY-Www`` (ISO week) or
``YYYY-MM`` (``--month`` too for monthly); default: the last whole one (monthly: this
month so far). The project's devices are those the configuration and the platform store
(devices created through the API) assign to it, plus ``--device``. Grading rules 6-8 read
what the API's grades read (:func:`hub.analysis.inputs.grading_inputs`): the platform
store's hazards and stored devices when the configured store exists, and the set points
and rated currents of every device."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from hub.reports.render import FORMATS

if TYPE_CHECKING:
    from hub.analysis.inputs import GradingSources


def cmd_report(args: argparse.Namespace) -> int:
    from hub.analysis.settings import analysis_settings, with_devices
    from hub.cli.helpers import EXIT_USAGE, fail, load_config, note, open_journal
    from hub.reports.data import build_report, current_month, last_period, period_range
    from hub.reports.render import render
    from hub.rollups.store import RollupStore

    _, config = load_config(args)
    s = analysis_settings(config)
    kind = args.kind
    month = args.period or getattr(args, "month", None)
    if month is None:
        month = (current_month(time.time(), s.tz_offset) if kind == "monthly"
                 else last_period(kind, time.time(), s.tz_offset))
    try:
        since, until = period_range(kind, month, s.tz_offset)
    except ValueError as e:
        return fail(str(e), EXIT_USAGE)
    sources, platform = grading_sources(config, s.set_points)
    stored = stored_devices(platform, args.project, config)
    s = with_devices(s, [*config.devices, *stored])
    devices = {d.id: d.name for d in config.devices if d.project == args.project}
    devices.update({d.id: d.name for d in stored})
    devices.update({d: d for d in args.device or () if d not in devices})
    if not devices:
        if platform is not None:
            platform.close()
        return fail(f"no device belongs to project {args.project!r} in {config.file} or "
                    "the platform store; name them with --device", EXIT_USAGE)
    store = RollupStore(s.path, readonly=True) if os.path.exists(s.path) else None
    if store is None:
        note(f"no rollups at {s.path} (configure a rollups sink): the report has no energy")
    j = open_journal(config)
    try:
        report = build_report(j, store, args.project, devices, since, until, s, month,
                              args.title or args.project, kind, sources)
        body = render(report, args.format)
    finally:
        j.close()
        if store is not None:
            store.close()
        if platform is not None:
            platform.close()
    out = args.output or f"report-{args.project}-{month}.{args.format}"
    if out == "-":
        sys.stdout.buffer.write(body)
    else:
        with open(out, "wb") as f:
            f.write(body)
        note(f"{out}: {report.grade.grade} ({report.grade.score:.1f}), {report.alarms} "
             f"alarms, {report.energy_total:,.2f} kWh")
    return 0


def stored_devices(platform: Any, project: str, config: Any) -> list[Any]:
    """The devices of ``project`` created through the API (none without a platform store),
    with their checked ``alarms`` and ``rated``; one whose settings no longer pass the
    checks is reported with neither."""
    from types import SimpleNamespace

    from hub.cli.helpers import note
    from hub.config import stored_device_settings

    out = []
    for d in platform.devices() if platform is not None else ():
        if d.project != project:
            continue
        try:
            alarms, _, _, rated = stored_device_settings(d.settings or {}, config.alarm_defaults)
        except ValueError as e:
            note(f"device {d.id}: stored settings not used ({e})")
            alarms, rated = {}, None
        out.append(SimpleNamespace(id=d.id, name=d.name, alarms=alarms, rated=rated))
    return out


def grading_sources(config: Any, set_points: dict[str, dict[str, float]]
                    ) -> tuple[GradingSources, Any]:
    """The sources of grading rules 6-8 for a command (and the platform store it opened,
    to close): the configured platform store when it exists, else the set points alone."""
    from hub.analysis.inputs import config_sources, store_sources
    from hub.cli.helpers import note

    settings = getattr(getattr(config, "api", None), "store", None)
    if settings is None or (settings.backend == "sqlite" and not os.path.exists(settings.path)):
        return config_sources(set_points), None
    from hub.store.settings import open_store

    try:
        platform = open_store(settings)
    except Exception as e:  # a report without hazards beats no report
        note(f"platform store not opened ({e}): hazards are left out of the grades")
        return config_sources(set_points), None
    return store_sources(platform, set_points), platform


def add_report_command(sub: argparse._SubParsersAction) -> None:
    """Register ``hub report ...`` on the main parser's subcommands."""
    from hub.cli.helpers import add_config_argument, command_group

    what = command_group(sub, "report", "project reports (HTML, PDF, Excel)")
    for kind, helptext, form in (
            ("daily", "a project's day", "YYYY-MM-DD; default: yesterday"),
            ("weekly", "a project's ISO week", "YYYY-Www; default: last week"),
            ("monthly", "a project's month", "YYYY-MM; default: this month")):
        sp = add_config_argument(what.add_parser(
            kind, help=f"{helptext}: safety grade, alarms, energy, devices"))
        sp.add_argument("--project", required=True, help="the project's code")
        sp.add_argument("--period", help=f"the local period, {form}")
        if kind == "monthly":
            sp.add_argument("--month", help="as --period")
        sp.add_argument("--format", choices=sorted(FORMATS), default="pdf")
        sp.add_argument("--device", action="append", help="a device of the project (repeat)")
        sp.add_argument("--title", help="the report's title (default: the project's code)")
        sp.add_argument("-o", "--output", help="file to write ('-': standard output); "
                        "default report-<project>-<period>.<format>")
        sp.set_defaults(func=cmd_report, kind=kind)
