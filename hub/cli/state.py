"""``hub devices``, ``hub readings`` and ``hub events``: read from the journal (read-only,
while the hub runs or after it stopped)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from hub.cli.helpers import (
    EXIT_USAGE,
    arg_time,
    fail,
    format_time,
    hub_status,
    load_config,
    not_running_text,
    note,
    open_journal,
    print_json_lines,
    subcommand,
    table,
    time_argument,
    time_header,
)


def cmd_devices(args: argparse.Namespace) -> int:
    plugins, config = load_config(args)
    from twisted.internet.task import Clock

    from hub.core import Hub  # builds models and the registry, opens nothing

    hub = Hub(config, plugins, Clock())
    states: dict[str, float] = {}
    active: dict[str, int] = {}
    if os.path.exists(config.journal.path):
        j = open_journal(config)
        states = j.device_states()
        for e in j.active_events():
            active[e.device] = active.get(e.device, 0) + 1
        j.close()
    status = hub_status(config.state_dir)
    if status.running is False:
        # last-seen times say nothing about now: nobody listens for the devices
        note(not_running_text(status, args.utc) + "; device states are unknown")
    now = time.time()
    rows = []
    for d in hub.registry:
        seen = states.get(d.id)
        online: bool | None = seen is not None and now - seen <= d.offline_after
        if status.running is False:
            online = None
        rows.append(dict(id=d.id, name=d.name, model=d.model_name, transport=d.transport,
                         address=d.address, project=d.project, location=d.location,
                         last_seen=format_time(seen, args.utc), online=online,
                         active_events=active.get(d.id, 0), offline_after=d.offline_after))
    if args.json:
        print_json_lines(rows)
        return 0
    state = {True: "online", False: "offline", None: "unknown"}
    print(table([(r["id"], r["name"], r["model"], r["transport"], r["project"] or None,
                  state[r["online"]], r["last_seen"], r["active_events"]) for r in rows],
                ("id", "name", "model", "transport", "project", "state", "last seen",
                 "active")))
    return 0


def _undeclared(config: Any, device: str) -> None:
    if device not in {d.id for d in config.devices}:
        print(f"note: {device!r} is not declared in {config.file} "
              "(showing what the journal holds, e.g. for an auto-provisioned device)",
              file=sys.stderr)


def cmd_readings(args: argparse.Namespace) -> int:
    from hub.model import QUANTITIES

    plugins, config = load_config(args)
    _undeclared(config, args.device)
    if args.quantity is not None and args.quantity not in QUANTITIES:
        return fail(f"{args.quantity!r} is not a quantity; one of: "
                    f"{', '.join(sorted(QUANTITIES))}", EXIT_USAGE)
    j = open_journal(config)
    if args.latest:
        readings = j.latest(args.device, args.quantity)
    else:
        readings = j.history(args.device, args.quantity, args.channel,
                             since=arg_time(args, "since"), until=arg_time(args, "until"),
                             limit=args.limit)
    j.close()
    if args.json:
        print_json_lines({"device": r.device, "channel": r.channel, "quantity": r.quantity,
                          "value": r.value, "unit": r.unit, "ts": r.ts,
                          "time": format_time(r.ts, args.utc), "quality": r.quality.value}
                         for r in readings)
        return 0
    print(table([(format_time(r.ts, args.utc), r.channel or None, r.quantity, f"{r.value:g}",
                  r.unit, r.quality.value) for r in readings],
                (time_header(args), "channel", "quantity", "value", "unit", "quality")))
    return 0


def _ack_dict(a: Any, utc: bool) -> dict[str, Any]:
    return {"by": a.by, "ts": a.ts, "time": format_time(a.ts, utc), "note": a.note}


def cmd_events(args: argparse.Namespace) -> int:
    _, config = load_config(args)
    if args.device:
        _undeclared(config, args.device)
    j = open_journal(config)
    events = j.active_events() if args.active else j.events(args.device,
                                                             arg_time(args, "since"), args.limit)
    acks: dict[str, list[Any]] = {}
    for a in j.acknowledgements(args.device):
        acks.setdefault(a.event_id, []).append(a)
    j.close()
    if args.device and args.active:
        events = [e for e in events if e.device == args.device]
    if args.json:
        print_json_lines({**e.to_dict(), "time": format_time(e.ts, args.utc),
                          "acks": [_ack_dict(a, args.utc) for a in acks.get(e.id, [])]}
                         for e in events)
        return 0

    def acked(event_id: str) -> str | None:
        if event_id not in acks:
            return None
        a = acks[event_id][-1]  # the latest; all of them are in --json
        return f"{a.by} {format_time(a.ts, args.utc)}" + (f" ({a.note})" if a.note else "")

    print(table([(format_time(e.ts, args.utc), e.id, e.device, e.kind.value, e.code,
                  e.channel or None, e.level.value, e.state.value, acked(e.id), e.message)
                 for e in events],
                (time_header(args), "id", "device", "kind", "code", "channel", "level",
                 "state", "acknowledged", "message")))
    return 0


def add_devices_parser(sub: argparse._SubParsersAction) -> None:
    subcommand(sub, "devices", cmd_devices, "list configured devices and their state",
               times=True)


def add_readings_parser(sub: argparse._SubParsersAction) -> None:
    sp = subcommand(sub, "readings", cmd_readings, "readings of a device from the journal",
                    times=True)
    sp.add_argument("--device", required=True)
    sp.add_argument("--quantity", help="e.g. temperature, residual_current, voltage")
    sp.add_argument("--channel")
    sp.add_argument("--since", type=time_argument, help="15m, 2h, 7d or an ISO 8601 time "
                    "(without an offset: local time, or UTC with --utc)")
    sp.add_argument("--until", type=time_argument)
    sp.add_argument("--limit", type=int, default=1000)
    sp.add_argument("--latest", action="store_true", help="latest value per channel/quantity")


def add_events_parser(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """``hub events``; returns its subparsers (``hub events ack`` is added there)."""
    sp = subcommand(sub, "events", cmd_events, "alarms, faults and state events", times=True)
    sp.add_argument("--device")
    sp.add_argument("--since", type=time_argument, help="15m, 2h, 7d or an ISO 8601 time")
    sp.add_argument("--limit", type=int, default=1000)
    sp.add_argument("--active", action="store_true", help="only raised, not yet cleared")
    # optional: plain `hub events` still lists
    return sp.add_subparsers(dest="events_command", metavar="WHAT")
