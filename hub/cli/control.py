"""``hub command`` and ``hub events ack``: requests to the running hub (the journal's one
writer) through its admin socket."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hub.cli.helpers import add_config_argument, admin_request, load_config, who

_who = who  # the old private name


def _param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        return key, json.loads(value)  # numbers and booleans as such
    except ValueError:
        return key, value


def cmd_command(args: argparse.Namespace) -> int:
    _, config = load_config(args)
    request = {"op": "command", "device": args.device, "action": args.action,
               "channel": args.channel or "", "params": dict(args.param or []),
               "by": args.by or who(), "ttl": args.ttl, "wait": not args.no_wait}
    answer = admin_request(config.state_dir, request, args.ttl + 10)
    if args.json:
        print(json.dumps(answer, ensure_ascii=False))
    elif not answer.get("ok"):
        print(f"refused: {answer.get('error')}", file=sys.stderr)
    else:
        detail = f": {answer['detail']}" if answer.get("detail") else ""
        print(f"command {answer['command_id']} {args.action} on {args.device}: "
              f"{answer['status']}{detail}")
    if not answer.get("ok"):
        return 2
    return 0 if answer["status"] in ("succeeded", "pending", "queued") else 1


def cmd_events_ack(args: argparse.Namespace) -> int:
    """Acknowledge an alarm or fault through the running hub (the journal's one writer);
    escalation of that event stops."""
    _, config = load_config(args)
    request = {"op": "ack", "event_id": args.event_id, "by": args.by or who(),
               "note": args.note or ""}
    answer = admin_request(config.state_dir, request, 30.0)
    if args.json:
        print(json.dumps(answer, ensure_ascii=False))
    elif not answer.get("ok"):
        print(f"refused: {answer.get('error')}", file=sys.stderr)
    else:
        print(f"event {answer['event_id']} ({answer['device']}) acknowledged by "
              f"{request['by']}")
    return 0 if answer.get("ok") else 2


def add_command_parser(sub: argparse._SubParsersAction) -> None:
    sp = add_config_argument(sub.add_parser("command", help="send a command to a device "
                                            "through the running hub (reset, silence, "
                                            "self_test, trip, close, ...)"))
    sp.add_argument("--device", required=True)
    sp.add_argument("action", help="reset, silence, self_test, trip, close, set_threshold, "
                    "enable_channel, disable_channel, reboot")
    sp.add_argument("--channel", help="e.g. T1 for a per-channel set point")
    sp.add_argument("--param", type=_param, action="append", metavar="KEY=VALUE",
                    help="e.g. --param rule=temperature --param value=70")
    sp.add_argument("--by", help="who asks (recorded in the journal; default: your login)")
    sp.add_argument("--ttl", type=float, default=30.0, help="seconds before it times out")
    sp.add_argument("--no-wait", action="store_true", help="return once it is queued")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_command)


def add_ack_parser(events: argparse._SubParsersAction) -> None:
    ack = events.add_parser("ack", help="acknowledge an alarm or fault (stops its escalation)")
    ack.add_argument("event_id", metavar="EVENT_ID")
    ack.add_argument("--by", help="who acknowledges (recorded; default: your login)")
    ack.add_argument("--note", help="e.g. what was found on site")
    # SUPPRESS: given before or after `ack`, these land in the same place
    ack.add_argument("-c", "--config", default=argparse.SUPPRESS)
    ack.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    ack.set_defaults(func=cmd_events_ack)
