"""A configuration for ``hub report`` tests: one simulated device ``d1`` of project ``p1``,
the ``rollups`` sink, and any other sections; its journal seeded with readings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from twisted.internet.task import Clock

from hub.journal import Journal


def report_config(tmp: Path, rollups: dict[str, Any] | None = None,
                  **sections: Any) -> Path:
    (tmp / "var").mkdir(exist_ok=True)
    config = tmp / "hub.yaml"
    config.write_text(yaml.safe_dump({
        "hub": {"state_dir": "var"}, **sections,
        "transports": {"demo": {"type": "simulator", "interval": 5}},
        "sinks": {"rollups": {"type": "rollups", **(rollups or {})}},
        "devices": [{"id": "d1", "name": "一号箱", "project": "p1", "model": "simulated",
                     "transport": "demo", "address": "normal"}]}, allow_unicode=True),
        encoding="utf-8")
    return config


def seed_journal(tmp: Path, records: Sequence[Any]) -> None:
    j = Journal(str(tmp / "var" / "journal.sqlite"), clock=Clock())
    j.open()
    j.append(list(records))
    j.flush()
    j.close()
