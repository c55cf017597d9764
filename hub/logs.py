"""Structured logging: twisted.logger events to stdout as text or JSON lines.

Log calls carry fields (``device=...``, ``transport=...``) rather than formatted strings, so
the JSON output can be filtered by device without parsing messages.
"""

from __future__ import annotations

import sys
from typing import IO

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    eventAsJSON,
    formatEventAsClassicLogText,
    globalLogBeginner,
)

_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn,
           "error": LogLevel.error}


def start_logging(level: str = "info", fmt: str = "text", out: IO[str] | None = None) -> None:
    """Send every log event at ``level`` or above to ``out`` (stdout) as text or JSON."""
    globalLogBeginner.beginLoggingTo([make_observer(level, fmt, out or sys.stdout)],
                                     redirectStandardIO=False)


def make_observer(level: str, fmt: str, stream: IO[str]) -> FilteringLogObserver:
    """The observer start_logging installs: level filter, then text or JSON lines."""

    def text(event: dict) -> None:
        line = formatEventAsClassicLogText(event)
        if line:
            stream.write(line)
            stream.flush()

    def json_line(event: dict) -> None:
        stream.write(eventAsJSON(event) + "\n")
        stream.flush()

    predicate = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[level])
    return FilteringLogObserver(json_line if fmt == "json" else text, [predicate])
