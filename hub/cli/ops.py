"""``hub metrics`` and ``hub cursors``: how the hub is doing, how far its sinks are."""

from __future__ import annotations

import argparse
import json
import sys

from hub.cli import helpers as h


def cmd_metrics(args: argparse.Namespace) -> int:
    from hub.service import metrics_path

    _, config = h.load_config(args)
    path = metrics_path(config.state_dir)
    status = h.hub_status(config.state_dir)
    doc = status.metrics
    if doc is None:
        return h.fail(f"no metrics at {path} (the hub writes them every few seconds while it "
                    "runs)", 1)
    stopped = status.running is False
    if stopped:  # the figures are the last snapshot, not the present
        print(f"note: {h.not_running_text(status, args.utc)}; these figures are its last",
              file=sys.stderr)
    if args.json:
        print(json.dumps({**doc, "running": status.running}, ensure_ascii=False))
        return 0
    print(f"hub {doc['hub']} at {h.format_time(doc['ts'], args.utc)}"
          + (" (its last snapshot: the hub is not running)" if stopped else ""))
    print(h.table([(m["name"], ",".join(f"{k}={v}" for k, v in m["labels"].items()) or "-",
                  f"{m['value']:g}") for m in doc["metrics"]], ("metric", "labels", "value")))
    return 0


def cmd_cursors(args: argparse.Namespace) -> int:
    """The sinks' journal cursors and how far behind each is; ``--drop`` forgets the cursor
    of a sink removed from the configuration (through the running hub, the journal's one
    writer), so retention no longer waits for it."""
    _, config = h.load_config(args)
    if args.rewind:
        return _rewind_cursor(config, args.rewind, args.to, getattr(args, "utc", False))
    if args.drop:
        answer = h.admin_request(config.state_dir, {"op": "drop_cursor", "name": args.drop,
                                                  "by": h.who()}, 30.0)
        if not answer.get("ok"):
            return h.fail(f"refused: {answer.get('error')}")
        print(f"cursor {args.drop!r} dropped")
        return 0
    j = h.open_journal(config)
    cursors, last = j.cursors(), j.last_seq()
    j.close()
    if args.json:
        for name, seq in cursors.items():
            print(json.dumps({"name": name, "seq": seq, "behind": last - seq}))
        return 0
    print(h.table([(name, seq, last - seq) for name, seq in cursors.items()],
                ("cursor", "delivered up to seq", "records behind")))
    return 0


def _rewind_cursor(config, name: str, to: str | None, utc: bool) -> int:
    """``hub cursors --rewind NAME --to SEQ|TIME``: through the running hub (the journal's
    one writer; audited there), so the running sink re-sends from there at once."""
    if not to:
        return h.fail("--rewind needs --to SEQ or --to TIME (15m, 2h, an ISO 8601 time)")
    request: dict = {"op": "rewind_cursor", "name": name, "by": h.who()}
    if to.strip().isdigit():
        request["seq"] = int(to)
    else:
        try:
            request["ts"] = h.parse_time(to, utc=utc)
        except argparse.ArgumentTypeError as e:
            return h.fail(str(e))
    answer = h.admin_request(config.state_dir, request, 30.0)
    if not answer.get("ok"):
        return h.fail(f"refused: {answer.get('error')}")
    print(f"cursor {name!r} rewound from seq {answer['from']} to {answer['to']}: "
          f"{answer['records']} records to deliver again")
    return 0


def add_metrics_parser(sub: argparse._SubParsersAction) -> None:
    h.subcommand(sub, "metrics", cmd_metrics, "counters and gauges of the running hub",
               times=True)


def add_cursors_parser(sub: argparse._SubParsersAction) -> None:
    sp = h.subcommand(sub, "cursors", cmd_cursors, "the sinks' journal cursors; drop the "
                    "cursor of a removed sink", json=True, times=True)
    sp.add_argument("--drop", metavar="NAME", help="forget this cursor (a sink removed for "
                    "good), so journal retention no longer waits for it")
    sp.add_argument("--rewind", metavar="NAME", help="deliver again from an earlier point "
                    "(a database lost points it had acknowledged); needs --to")
    sp.add_argument("--to", metavar="SEQ|TIME", help="with --rewind: a journal seq, or a time "
                    "(15m, 2h, ISO 8601): records committed after it are sent again")
