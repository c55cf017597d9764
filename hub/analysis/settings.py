"""Where the analysis reads from and how it judges: the rollup file, the time zone of its
days, the grading scheme and the time-of-use schedule, all from the configured ``rollups``
sink (defaults when none is configured)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from hub.analysis.energy import TouSchedule
from hub.analysis.grading import GradingScheme
from hub.reports.schedule import ReportSchedule
from hub.rollups.store import DEFAULT_TZ_OFFSET, default_path, resolve_path


@dataclass(frozen=True)
class AnalysisSettings:
    path: str
    tz_offset: int
    grading: GradingScheme
    tou: TouSchedule
    configured: bool  # a rollups sink keeps the file up to date
    reports: ReportSchedule = field(default_factory=ReportSchedule)
    #: device thresholds the grading compares readings with (hub.analysis.setpoints)
    set_points: dict[str, dict[str, float]] = field(default_factory=dict)


def analysis_settings(config: Any) -> AnalysisSettings:
    for section in config.sinks.values():
        if section.type == "rollups":
            o = section.options
            return AnalysisSettings(resolve_path(o.path, config.state_dir),
                                    int(o.tz_offset_hours * 3600),
                                    GradingScheme.from_mapping(o.grading),
                                    TouSchedule.from_mapping(o.tou), True,
                                    ReportSchedule.from_mapping(getattr(o, "reports", None)),
                                    config_set_points(config))
    return AnalysisSettings(default_path(config.state_dir), DEFAULT_TZ_OFFSET,
                            GradingScheme(), TouSchedule(), False,
                            set_points=config_set_points(config))


def with_devices(s: AnalysisSettings, devices: Iterable[Any]) -> AnalysisSettings:
    """``s`` for the running ``devices`` (the registry: those of the configuration file,
    of the platform store and provisioned ones): their set points, and their own ``rated``
    currents over the rollups sink's ``reports.rated``."""
    devices = list(devices)
    own = {d.id: d.rated for d in devices if getattr(d, "rated", None) is not None}
    reports = s.reports
    if own:
        reports = replace(reports, rated={**reports.rated, **own})
    return replace(s, reports=reports, set_points=set_points_of(devices))


def config_set_points(config: Any) -> dict[str, dict[str, float]]:
    """:func:`set_points_of` the devices of the configuration file."""
    return set_points_of(getattr(config, "devices", ()))


def set_points_of(devices: Iterable[Any]) -> dict[str, dict[str, float]]:
    """``{device: {"temperature": °C, "residual_current": mA}}``: the alarm set points of
    each device (its ``alarms`` thresholds, or the configuration's defaults)."""
    out: dict[str, dict[str, float]] = {}
    for d in devices:
        points: dict[str, float] = {}
        for code, th in (getattr(d, "alarms", None) or {}).items():
            v = getattr(th, "alarm", None)
            if code in ("temperature", "residual_current") and v is not None and getattr(
                    th, "enabled", True):
                points[code] = float(v)
        if points:
            out[d.id] = points
    return out
