"""``hub inspections``: inspection plans and tasks (巡查) from the command line.

::

    hub inspections plans [--project p1] [--json]
    hub inspections add-plan --project p1 --name 配电箱巡查 --item 箱门 --item 温度 \\
        --every daily [--grace 28800] [--assignee zhang]
    hub inspections tasks [--project p1] [--state missed] [--plan 3] [--json]
    hub inspections record 12 --ok 箱门 --problem 温度 --note "62 °C at the terminal"

Like ``hub alarms`` it writes the platform store directly and audits each act (through the
running hub if there is one). The running hub's desk generates a new plan's first task at
its next pass (at most 30 s).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from hub.cli.helpers import fail, format_time, output, subcommand, who


def _open(args: argparse.Namespace) -> tuple[Any, Any]:
    from hub.api.cli import _open as open_store

    return open_store(args)


def _every(text: str) -> float | str:
    from hub.alarmdesk.inspections import FREQUENCIES, MONTHLY

    if text == MONTHLY:
        return MONTHLY
    try:
        every = FREQUENCIES[text] if text in FREQUENCIES else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: seconds, or {', '.join(FREQUENCIES)}") from None
    if not 600 <= every <= 366 * 86400:
        raise argparse.ArgumentTypeError("600 s to 366 days")
    return every


def cmd_plans(args: argparse.Namespace) -> int:
    _, store = _open(args)
    try:
        rows = store.plans({args.project} if args.project else None, limit=100_000)
    finally:
        store.close()
    output(args, [{**p, "items": p["items"] if args.json else ", ".join(p["items"]),
                   "next": format_time(p["next_ts"], args.utc)} for p in rows],
           ["id", "project", "name", "every", "grace", "assignee", "active", "next", "items"])
    return 0


def cmd_add_plan(args: argparse.Namespace) -> int:
    from hub.api.cli import _audit

    config, store = _open(args)
    from hub.alarmdesk.inspections import MONTHLY, NOMINAL_MONTH

    now = time.time()
    monthly = args.every == MONTHLY
    every = NOMINAL_MONTH if monthly else args.every
    grace = args.grace if args.grace is not None else (0.0 if monthly else every)
    by = args.by or who()
    try:
        # a monthly plan's calendar in the project's local time, as the API's
        offset = int((store.policy(args.project) or {}).get("utc_offset_minutes", 480))
        plan, _ = store.plan_add(args.project, args.name, args.item, every, grace,
                                 now, args.assignee or "", by, now,
                                 MONTHLY if monthly else "", offset)
    finally:
        store.close()
    _audit(config, "inspection.plan_created", args.project,
           {"project": args.project, "name": args.name, "every": every, "grace": grace,
            "items": args.item, "assignee": args.assignee or ""}
           | ({"frequency": MONTHLY, "utc_offset_minutes": offset} if monthly else {}))
    print(f"plan {plan['id']} created")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    _, store = _open(args)
    try:
        rows = store.tasks({args.project} if args.project else None, state=args.state,
                           plan_id=args.plan, after_id=args.after, limit=args.limit)
    finally:
        store.close()
    output(args, [{**t, "due": format_time(t["due_ts"], args.utc),
                   "deadline": format_time(t["deadline_ts"], args.utc)} for t in rows],
           ["id", "plan_id", "project", "plan_name", "due", "deadline", "state", "late",
            "done_by", "problems"])
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from hub.api.cli import _audit
    from hub.store.inspections import TaskState

    config, store = _open(args)
    by = args.by or who()
    results = [{"item": i, "result": "ok", "note": ""} for i in args.ok or ()] + \
              [{"item": i, "result": "problem", "note": ""} for i in args.problem or ()]
    try:
        task = store.task(args.id)
        if task is None:
            return fail(f"no inspection task {args.id}")
        unknown = [r["item"] for r in results if r["item"] not in task["items"]]
        if unknown:
            return fail(f"not an item of the plan: {unknown[0]!r} (items: "
                        f"{', '.join(task['items'])})")
        try:
            done, _ = store.task_record(args.id, results, args.note or "", by, time.time())
        except TaskState as e:
            return fail(str(e))
    finally:
        store.close()
    _audit(config, "inspection.task_done", str(args.id),
           {"project": done["project"], "plan_id": done["plan_id"], "late": done["late"],
            "problems": done["problems"]})
    print(f"task {args.id} recorded" + (" (late)" if done["late"] else ""))
    return 0


def add_inspections_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspections", help="inspection plans and tasks (巡查)")
    verbs = p.add_subparsers(dest="inspections_command", metavar="WHAT")
    verbs.required = True
    plans = subcommand(verbs, "plans", cmd_plans, "inspection plans", json=True, times=True)
    plans.add_argument("--project")
    add = subcommand(verbs, "add-plan", cmd_add_plan, "create a plan (its first task is due "
                                                      "now)")
    add.add_argument("--project", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--item", action="append", required=True, help="what to check "
                                                                     "(repeat)")
    add.add_argument("--every", type=_every, required=True,
                     help="seconds between tasks, or hourly, daily, weekly, monthly")
    add.add_argument("--grace", type=float, help="s to do a task (default: the period)")
    add.add_argument("--assignee")
    add.add_argument("--by", help="who acts (recorded; default: your login)")
    tasks = subcommand(verbs, "tasks", cmd_tasks, "inspection tasks, oldest first",
                       json=True, times=True)
    tasks.add_argument("--project")
    tasks.add_argument("--state", choices=["open", "done", "missed"])
    tasks.add_argument("--plan", type=int)
    tasks.add_argument("--after", type=int, default=0, help="ids after this one")
    tasks.add_argument("--limit", type=int, default=1000)
    rec = subcommand(verbs, "record", cmd_record, "record a task's results")
    rec.add_argument("id", type=int, metavar="TASK")
    rec.add_argument("--ok", action="append", metavar="ITEM", help="an item found in order")
    rec.add_argument("--problem", action="append", metavar="ITEM", help="an item with a "
                                                                        "problem")
    rec.add_argument("--note")
    rec.add_argument("--by", help="who acts (recorded; default: your login)")
