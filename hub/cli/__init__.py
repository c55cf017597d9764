"""The ``hub`` command (console script ``hub = hub.cli:main``).

One module per group of subcommands, each with ``add_parsers(sub)`` and its ``cmd_*``
handlers; :mod:`hub.cli.helpers` is the public toolkit, for plugins' subcommands as well:

==================  =====================================================================
``run``             ``hub run``, ``hub check``
``state``           ``hub devices``, ``hub readings``, ``hub events``
``control``         ``hub command``, ``hub events ack`` (through the running hub)
``ops``             ``hub metrics``, ``hub cursors``
``audit``           ``hub audit verify``, ``hub audit list``
``plugins``         ``hub plugins``
``helpers``         config loading, admin socket, tables/JSON, times, exit codes (public)
``hub.api.cli``     ``hub users`` (the HTTP API's accounts; lives with the API)
==================  =====================================================================

``hub run`` installs Twisted's asyncio reactor before anything imports
``twisted.internet.reactor`` (aiocoap shares that loop); the other commands never start a
reactor. ``devices``, ``readings`` and ``events`` open the journal read-only, and ``audit``
the audit log, so they work while the hub runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from hub.cli.audit import cmd_audit_list, cmd_audit_verify
from hub.cli.control import cmd_command, cmd_events_ack
from hub.cli.helpers import (
    DEFAULT_CONFIG,
    EXIT_PIPE,
    admin_request,
    command_group,
    install_reactor,
    parse_time,
)
from hub.cli.helpers import load_config as _load
from hub.cli.ops import cmd_cursors, cmd_metrics
from hub.cli.plugins import cmd_plugins
from hub.cli.run import cmd_check, cmd_run
from hub.cli.state import cmd_devices, cmd_events, cmd_readings

__all__ = ["DEFAULT_CONFIG", "admin_request", "build_parser", "command_group",
           "install_reactor", "main", "parse_time", "_load", "cmd_audit_list",
           "cmd_audit_verify", "cmd_check", "cmd_command", "cmd_cursors", "cmd_devices",
           "cmd_events", "cmd_events_ack", "cmd_metrics", "cmd_plugins", "cmd_readings",
           "cmd_run"]


def build_parser(plugins: Any = None) -> argparse.ArgumentParser:
    """The argument parser; ``plugins`` (a HubPlugins) may add subcommands."""
    from hub.cli import audit, control, ops, run, state
    from hub.cli import plugins as plugin_cmds

    p = argparse.ArgumentParser(prog="hub", description="Electrical-fire monitoring IoT hub.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    run.add_parsers(sub)
    plugin_cmds.add_parsers(sub)
    control.add_command_parser(sub)
    ops.add_metrics_parser(sub)
    state.add_devices_parser(sub)
    ops.add_cursors_parser(sub)
    state.add_readings_parser(sub)
    events = state.add_events_parser(sub)
    control.add_ack_parser(events)
    audit.add_parsers(sub)
    from hub.api.cli import add_users_command  # `hub users ...` (the API's accounts)
    add_users_command(sub)
    from hub.alarmdesk.cli import add_alarms_command  # `hub alarms ...` (alarm records)
    add_alarms_command(sub)
    from hub.alarmdesk.inspections_cli import add_inspections_command  # `hub inspections`
    add_inspections_command(sub)
    from hub.rollups.cli import add_rollups_command  # `hub rollups rebuild`
    add_rollups_command(sub)
    from hub.reports.cli import add_report_command  # `hub report monthly`
    add_report_command(sub)
    from hub.ota.cli import add_ota_command  # `hub ota ...` (firmware campaigns)
    add_ota_command(sub)
    if plugins is not None:
        plugins.hook.hub_add_commands(subparsers=sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from hub.pluginmanager import make_plugins

    try:
        parser = build_parser(make_plugins(strict=False))
    except Exception as e:  # a broken plugin must not take `hub plugins` down with it
        print(f"warning: plugin commands unavailable: {e}", file=sys.stderr)
        parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe shows here, not at exit
    except BrokenPipeError:
        # `hub readings … | head -1`: the reader has what it wanted. Point stdout at
        # /dev/null so the interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
