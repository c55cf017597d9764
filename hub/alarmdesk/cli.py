"""``hub alarms``: alarm records from the command line, single and in batches.

::

    hub alarms list [--open] [--state active-unacknowledged] [--project p1] [--json]
    hub alarms show 12
    hub alarms ack 12 13 14 --note "seen on site"
    hub alarms assign 12 --to zhang
    hub alarms comment 12 --note "ladder needed"
    hub alarms handle 12 13 --cause "loose terminal" --action-taken "tightened"

Like ``hub users`` it writes the platform store directly (SQLite WAL: whether or not the hub
runs) and records each act in the audit log, through the running hub if there is one. The
running hub's escalations read a record's state before each step, so an acknowledgement
made here stops them too. A batch is checked whole first: an unknown id or an act the
state does not allow changes nothing.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from hub.cli.helpers import fail, format_time, output, subcommand, who

_VERBS = {"ack": "acknowledge", "assign": "assign", "comment": "comment", "handle": "handle"}


def _open(args: argparse.Namespace) -> tuple[Any, Any]:
    from hub.api.cli import _open as open_store

    return open_store(args)


def _row(r: Any, utc: bool) -> dict[str, Any]:
    d = r.as_dict()
    d["first"] = format_time(r.first_ts, utc)
    d["acked"] = format_time(r.acked_ts, utc)
    return d


def cmd_list(args: argparse.Namespace) -> int:
    _, store = _open(args)
    try:
        rows = store.alarms({args.project} if args.project else None, open_only=args.open,
                            state=args.state, device=args.device, after_id=args.after,
                            limit=args.limit)
    finally:
        store.close()
    output(args, [_row(r, args.utc) for r in rows],
           ["id", "device", "project", "code", "channel", "severity", "state", "count",
            "first", "acked_by", "assignee"])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    _, store = _open(args)
    try:
        r = store.alarm(args.id)
        if r is None:
            return fail(f"no alarm {args.id}")
        history = store.alarm_history(args.id)
    finally:
        store.close()
    if args.json:
        output(args, [{**r.as_dict(), "history": history}], [])
        return 0
    output(args, [_row(r, args.utc)], ["id", "device", "code", "severity", "state", "count",
                                       "acked_by", "assignee", "cause", "action_taken"])
    print()
    output(args, [{**h, "time": format_time(h["ts"], args.utc)} for h in history],
           ["time", "by", "action", "note"])
    return 0


def cmd_act(args: argparse.Namespace) -> int:
    from hub.alarmdesk.lifecycle import IllegalAct, apply_act
    from hub.api.cli import _audit

    action = _VERBS[args.verb]
    by = args.by or who()
    now = time.time()
    kw = dict(note=args.note or "", assignee=getattr(args, "to", "") or "",
              cause=getattr(args, "cause", "") or "",
              action_taken=getattr(args, "action_taken", "") or "")
    config, store = _open(args)
    done = []
    try:
        records = []
        for alarm_id in dict.fromkeys(args.ids):
            r = store.alarm(alarm_id)
            if r is None:
                return fail(f"no alarm {alarm_id}; nothing done")
            try:
                apply_act(r, action, by, now, **kw)
            except IllegalAct as e:
                return fail(f"alarm {alarm_id}: {e}; nothing done")
            records.append(r)
        for r in records:
            new, change = store.alarm_act(r.id, action, by, now, **kw)
            if change is not None:
                done.append((new, change))
    except IllegalAct as e:
        return fail(str(e))
    finally:
        store.close()
    for new, change in done:
        _audit(config, f"alarm.{change.action}", str(new.id), {
            "device": new.device, "project": new.project, "code": new.code,
            "channel": new.channel, "note": change.note, **change.details})
    unchanged = len(set(args.ids)) - len(done)
    print(f"{len(done)} alarm(s) {action}d" + (f", {unchanged} unchanged" if unchanged else ""))
    return 0


def add_alarms_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alarms", help="alarm records: list, show, ack, assign, comment, handle")
    verbs = p.add_subparsers(dest="alarms_command", metavar="WHAT")
    verbs.required = True
    ls = subcommand(verbs, "list", cmd_list, "alarm records, oldest first", json=True,
                    times=True)
    ls.add_argument("--open", action="store_true", help="only records not closed")
    ls.add_argument("--state", choices=["active-unacknowledged", "active-acknowledged",
                                        "cleared-unacknowledged", "cleared-acknowledged"])
    ls.add_argument("--project")
    ls.add_argument("--device")
    ls.add_argument("--after", type=int, default=0, help="ids after this one")
    ls.add_argument("--limit", type=int, default=1000)
    show = subcommand(verbs, "show", cmd_show, "one record and its history", json=True,
                      times=True)
    show.add_argument("id", type=int)
    for verb, help in (("ack", "acknowledge"), ("assign", "assign to a person"),
                       ("comment", "add a note"),
                       ("handle", "acknowledge with the cause and the action taken")):
        a = subcommand(verbs, verb, cmd_act, help)
        a.add_argument("ids", type=int, nargs="+", metavar="ID")
        a.add_argument("--note", help="recorded with the act")
        a.add_argument("--by", help="who acts (recorded; default: your login)")
        if verb == "assign":
            a.add_argument("--to", required=True, help="the person responsible")
        if verb == "handle":
            a.add_argument("--cause", required=True)
            a.add_argument("--action-taken", required=True)
        a.set_defaults(verb=verb)
