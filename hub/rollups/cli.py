"""``hub rollups rebuild``: the rollups again from the journal (after a bug fix, a changed
time zone, a lost file). Run it with the hub stopped: the running rollup sink writes the
same file."""

from __future__ import annotations

import argparse
import os
from typing import Any

from hub.rollups.child import try_lock
from hub.rollups.store import RollupStore


def rollup_settings(config: Any) -> tuple[str, int]:
    """(path, tz offset in s) of the configured ``rollups`` sink, or the defaults."""
    from hub.analysis.settings import analysis_settings

    a = analysis_settings(config)
    return a.path, a.tz_offset


def cmd_rebuild(args: argparse.Namespace) -> int:
    from hub.cli.helpers import (
        EXIT_FAILED,
        fail,
        hub_status,
        load_config,
        note,
        open_journal,
    )

    _, config = load_config(args)
    if hub_status(config.state_dir).running:
        return fail("the hub is running: stop it first (its rollup sink writes the same "
                    "file)", EXIT_FAILED)
    path, tz = rollup_settings(config)
    lock = try_lock(path)
    if lock is None:  # a fold process of a hub killed a moment ago, finishing its write
        return fail(f"a rollup fold still writes {path}: try again in a moment", EXIT_FAILED)
    try:
        j = open_journal(config)
        store = RollupStore(path, tz_offset=tz)
        try:
            n = store.rebuild(j)
            note(f"rollups rebuilt in {path}: {n} readings folded in up to seq "
                 f"{store.applied}")
        finally:
            store.close()
            j.close()
    finally:
        os.close(lock)
    return 0


def add_rollups_command(sub: argparse._SubParsersAction) -> None:
    """Register ``hub rollups ...`` on the main parser's subcommands."""
    from hub.cli.helpers import add_config_argument, command_group

    what = command_group(sub, "rollups", "hourly and daily aggregates (rebuild)")
    sp = add_config_argument(what.add_parser(
        "rebuild", help="build the rollups again from the journal (hub stopped)"))
    sp.set_defaults(func=cmd_rebuild)
