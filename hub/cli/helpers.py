"""Helpers for ``hub`` subcommands, the built-in ones and those plugins add (public API).

A plugin adds ``hub <x>`` from its ``hub_add_commands`` hook; with these helpers its command
reads, fails and prints like the built-in ones::

    from hub.cli import helpers as h

    def cmd_hello(args) -> int:
        plugins, config = h.load_config(args)          # exits 2 with the errors on stderr
        rows = [(d.id, d.name) for d in config.devices]
        h.output(args, [{"id": i, "name": n} for i, n in rows], ("id", "name"))
        return h.EXIT_OK

    @hookimpl
    def hub_add_commands(subparsers):
        p = subparsers.add_parser("hello", help="say hello to every device")
        h.add_config_argument(p)                      # -c/--config, default conf/hub.yaml
        h.add_output_arguments(p)                     # --json and --utc
        p.set_defaults(func=cmd_hello)

Conventions every command follows:

* **exit codes**: :data:`EXIT_OK` (0) done; :data:`EXIT_FAILED` (1) it ran and the answer is
  "no" (a command failed, the audit log is broken, nothing to read yet); :data:`EXIT_USAGE`
  (2) it could not run as asked (bad configuration, refused request, unknown name).
  A closed pipe (``hub readings … | head -1``) ends the command quietly with
  :data:`EXIT_PIPE` (141, what a shell reports for SIGPIPE).
* **output**: a table for people, or with ``--json`` one JSON object per line (a missing
  value is ``null``, never ``"-"``); notes and errors go to stderr, never into the data.
* **times**: printed in local time with its UTC offset (``2026-12-04T16:00:00.000+08:00``),
  or in UTC with ``--utc``; a time given without an offset is read by the same rule (local,
  or UTC with ``--utc``). Durations such as ``15m``, ``2h``, ``7d`` mean that long ago.
* **the running hub** is reached through its admin socket (:func:`admin_request`); whether
  one runs at all is :func:`hub_status`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

#: ``-c`` when none is given. Relative to the current directory (like every path given on a
#: command line), i.e. the checkout for ``make run``; paths *inside* the file are relative
#: to the file's own directory.
DEFAULT_CONFIG = "conf/hub.yaml"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PIPE = 141


# ---------------------------------------------------------------------------- failing


def fail(message: str, code: int = EXIT_USAGE) -> int:
    """Print ``message`` to stderr and return ``code`` (``return fail("…")``)."""
    print(message, file=sys.stderr)
    return code


def die(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``message`` to stderr and end the command with ``code``."""
    raise SystemExit(fail(message, code))


def note(message: str) -> None:
    """A remark for the person at the terminal (stderr, so ``--json`` output stays clean)."""
    print(f"note: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------- arguments


def add_config_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                        help=f"configuration file (default {DEFAULT_CONFIG})")
    return parser


def add_output_arguments(parser: argparse.ArgumentParser, times: bool = True
                         ) -> argparse.ArgumentParser:
    """``--json`` (one object per line) and, for commands that show or take times, ``--utc``."""
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    if times:
        parser.add_argument("--utc", action="store_true", help="times in UTC (default: local "
                            "time with its offset); also how a time without offset is read")
    return parser


def subcommand(subparsers: argparse._SubParsersAction, name: str, func: Any, help: str, *,
               config: bool = True, json: bool = False, times: bool = False
               ) -> argparse.ArgumentParser:
    """``hub <name>`` running ``func(args)``: with ``-c`` (``config``), ``--json`` and, with
    ``times``, ``--utc``. Returns the parser for the command's own arguments."""
    parser = subparsers.add_parser(name, help=help)
    if config:
        add_config_argument(parser)
    if json or times:
        add_output_arguments(parser, times=times)
    parser.set_defaults(func=func)
    return parser


def time_argument(text: str) -> str:
    """An argparse ``type`` for ``--since``/``--until``: checked now, converted with
    :func:`arg_time` once ``--utc`` is known."""
    parse_time(text)
    return text


def arg_time(args: argparse.Namespace, name: str) -> float | None:
    """The epoch seconds of the time argument ``name`` (None when not given)."""
    text = getattr(args, name, None)
    if text is None:
        return None
    return parse_time(text, utc=getattr(args, "utc", False))


def load_config(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(plugins, config)`` for ``args.config``, or end the command (exit 2) with every
    configuration error on stderr."""
    from hub.config import load_config as load
    from hub.pluginmanager import PluginError, make_plugins
    from hub.validate import ConfigError

    if args.config == DEFAULT_CONFIG and not os.path.exists(DEFAULT_CONFIG):
        die(f"{DEFAULT_CONFIG}: not found in {os.getcwd()} (the default -c is relative to the "
            "current directory: run from the checkout, or give -c, e.g. -c /etc/hub/hub.yaml)")
    try:
        plugins = make_plugins()
        return plugins, load(args.config, plugins)
    except PluginError as e:
        die(f"plugin error: {e}")
    except ConfigError as e:
        die(str(e))


# ---------------------------------------------------------------------------- times


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: float | None = None, utc: bool = False) -> float:
    """``15m``, ``2h``, ``7d`` (ago), or an ISO 8601 time as epoch seconds. A time without
    an offset is local time, or UTC when ``utc``."""
    m = _RELATIVE.match(text.strip())
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration like 15m, 2h, 7d nor an ISO 8601 time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC) if utc else dt.astimezone()
    return dt.timestamp()


def format_time(ts: float | None, utc: bool = False) -> str | None:
    """ISO 8601 with milliseconds and the offset (local time, or UTC); None for None."""
    if ts is None:
        return None
    tz = UTC if utc else None
    return datetime.fromtimestamp(ts, tz=tz).astimezone(tz).isoformat(timespec="milliseconds")


def time_header(args: argparse.Namespace) -> str:
    return "time (UTC)" if getattr(args, "utc", False) else "time (local)"


# ---------------------------------------------------------------------------- output


def width(text: str) -> int:
    """Terminal columns: CJK characters (device names, locations) take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> str:
    """Aligned columns under a header line; None prints as ``-``."""
    cells = [list(map(str, headers))] + [["-" if c is None else str(c) for c in r]
                                         for r in rows]
    widths = [max(width(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c + " " * (w - width(c)) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_json_lines(objects: Iterable[Mapping[str, Any]]) -> None:
    for o in objects:
        print(json.dumps(o, ensure_ascii=False, default=str))


def output(args: argparse.Namespace, objects: Sequence[Mapping[str, Any]],
           columns: Sequence[str], headers: Sequence[str] | None = None) -> None:
    """JSON lines with ``--json``, else a table of ``columns`` of each object."""
    if getattr(args, "json", False):
        print_json_lines(objects)
    else:
        print(table([[o.get(c) for c in columns] for o in objects], headers or columns))


# ---------------------------------------------------------------------------- the running hub


def who() -> str:
    """The person asking (recorded with commands and acknowledgements)."""
    import getpass

    return os.environ.get("SUDO_USER") or getpass.getuser()


def admin_request(state_dir: str, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send one request to the running hub's admin socket and return its answer (see
    :mod:`hub.admin` for the operations); ends the command when no hub answers."""
    import socket

    from hub.admin import socket_path

    path = socket_path(state_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            die(f"no hub is listening on {path} (is it running with this configuration?)")
        except PermissionError:
            die(f"no permission to use {path} (run as the hub's user)")
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                die(f"no answer from the hub within {timeout:g} s", EXIT_FAILED)
            if not chunk:
                die("the hub closed the admin connection", EXIT_FAILED)
            data += chunk
    return json.loads(data)


@dataclass(frozen=True)
class HubStatus:
    """Whether a hub runs with a configuration, as far as this user can tell."""

    #: True, False, or None when it cannot be told (no permission on the socket and no
    #: recent metrics snapshot)
    running: bool | None
    #: when a stopped hub was last seen alive (its last metrics snapshot), if known
    since: float | None = None
    #: the last metrics snapshot, if any
    metrics: dict[str, Any] | None = None


#: a running hub rewrites its metrics snapshot every 10 s (hub.service.METRICS_INTERVAL)
STALE_SNAPSHOT = 30.0


def hub_status(state_dir: str, now: float | None = None) -> HubStatus:
    """Tell whether a hub runs on ``state_dir``: its admin socket accepts a connection (a
    stopped hub removes it; a killed one leaves a socket nobody listens on). When the
    socket cannot be tried (another user's hub), the age of the metrics snapshot decides."""
    import socket

    from hub.admin import socket_path
    from hub.service import metrics_path

    doc: dict[str, Any] | None
    try:
        with open(metrics_path(state_dir), encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        doc = None
    last = doc.get("ts") if isinstance(doc, dict) else None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        try:
            s.connect(socket_path(state_dir))
            return HubStatus(True, None, doc)
        except (FileNotFoundError, ConnectionRefusedError):
            return HubStatus(False, last, doc)
        except OSError:
            pass
    if last is None:
        return HubStatus(None, None, doc)
    now = time.time() if now is None else now
    if now - last > STALE_SNAPSHOT:
        return HubStatus(False, last, doc)
    return HubStatus(True, None, doc)


def not_running_text(status: HubStatus, utc: bool = False) -> str:
    if status.since is None:
        return "the hub is not running (no record of it having run with this configuration)"
    return f"the hub is not running (since {format_time(status.since, utc)})"


def open_journal(config: Any) -> Any:
    """The journal, read-only (works while the hub writes it); ends the command when the
    hub never ran with this configuration."""
    from twisted.internet.task import Clock

    from hub.journal import Journal

    path = config.journal.path
    if not os.path.exists(path):
        die(f"no journal at {path} (has the hub run with {config.file}?)", EXIT_FAILED)
    j = Journal(path, clock=Clock(), readonly=True)
    j.open()
    return j


# ---------------------------------------------------------------------------- groups


def command_group(subparsers: argparse._SubParsersAction, name: str,
                  help: str) -> argparse._SubParsersAction:
    """The subcommands of a group such as ``hub simulate``, created by whichever plugin asks
    first, so several plugins can each add ``hub simulate <theirs>`` from
    ``hub_add_commands``."""
    groups = subparsers.__dict__.setdefault("_hub_groups", {})
    if name not in groups:
        parser = subparsers.add_parser(name, help=help)
        groups[name] = parser.add_subparsers(dest=f"{name}_command", metavar="WHAT")
        groups[name].required = True
    return groups[name]


def install_reactor() -> None:
    """Install the asyncio reactor on a fresh event loop (passing the loop avoids
    asyncio's "no current event loop" deprecation path). Call it first in a command that
    runs a reactor: aiocoap shares the loop."""
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor

        if type(reactor).__name__ != "AsyncioSelectorReactor":
            raise RuntimeError("a non-asyncio Twisted reactor was installed before the hub started")
        return
    import asyncio

    from twisted.internet import asyncioreactor

    asyncioreactor.install(asyncio.new_event_loop())
