"""Where the analysis reads from and how it judges: the rollup file, the time zone of its
days, the grading scheme and the time-of-use schedule, all from the configured ``rollups``
sink (defaults when none is configured)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.analysis.energy import TouSchedule
from hub.analysis.grading import GradingScheme
from hub.rollups.store import DEFAULT_TZ_OFFSET, default_path, resolve_path


@dataclass(frozen=True)
class AnalysisSettings:
    path: str
    tz_offset: int
    grading: GradingScheme
    tou: TouSchedule
    configured: bool  # a rollups sink keeps the file up to date


def analysis_settings(config: Any) -> AnalysisSettings:
    for section in config.sinks.values():
        if section.type == "rollups":
            o = section.options
            return AnalysisSettings(resolve_path(o.path, config.state_dir),
                                    int(o.tz_offset_hours * 3600),
                                    GradingScheme.from_mapping(o.grading),
                                    TouSchedule.from_mapping(o.tou), True)
    return AnalysisSettings(default_path(config.state_dir), DEFAULT_TZ_OFFSET,
                            GradingScheme(), TouSchedule(), False)
