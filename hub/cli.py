"""The ``hub`` command.

``hub run`` installs Twisted's asyncio reactor before anything imports
``twisted.internet.reactor`` (aiocoap shares that loop); the other commands never start a
reactor. ``devices``, ``readings`` and ``events`` open the journal read-only, and ``audit``
the audit log, so they work while the hub runs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

DEFAULT_CONFIG = "conf/hub.yaml"


def install_reactor() -> None:
    """Install the asyncio reactor on a fresh event loop (passing the loop avoids
    asyncio's "no current event loop" deprecation path)."""
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor

        if type(reactor).__name__ != "AsyncioSelectorReactor":
            raise RuntimeError("a non-asyncio Twisted reactor was installed before the hub started")
        return
    import asyncio

    from twisted.internet import asyncioreactor

    asyncioreactor.install(asyncio.new_event_loop())


# ---------------------------------------------------------------------------- helpers


def _fail(message: str, code: int = 2) -> int:
    print(message, file=sys.stderr)
    return code


def _load(args: argparse.Namespace):
    """(plugins, config) or raise SystemExit with the error on stderr."""
    from hub.config import load_config
    from hub.pluginmanager import PluginError, make_plugins
    from hub.validate import ConfigError

    try:
        plugins = make_plugins()
        return plugins, load_config(args.config, plugins)
    except PluginError as e:
        raise SystemExit(_fail(f"plugin error: {e}")) from None
    except ConfigError as e:
        raise SystemExit(_fail(str(e))) from None


def _open_journal(config):
    import os

    from twisted.internet.task import Clock

    from hub.journal import Journal

    path = config.journal.path
    if not os.path.exists(path):
        raise SystemExit(_fail(f"no journal at {path} (has the hub run with {config.file}?)", 1))
    j = Journal(path, clock=Clock(), readonly=True)
    j.open()
    return j


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: float | None = None) -> float:
    """``15m``, ``2h``, ``7d`` (ago), or an ISO 8601 time (without an offset it is local
    time) as UTC epoch seconds."""
    m = _RELATIVE.match(text.strip())
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration like 15m, 2h, 7d nor an ISO 8601 time") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # naive means the operator's local time
    return dt.timestamp()


def _iso(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


def _width(text: str) -> int:
    """Terminal columns: CJK characters (device names, locations) take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _table(rows: list[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [list(map(str, headers))] + [[str(c) for c in r] for r in rows]
    widths = [max(_width(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c + " " * (w - _width(c)) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- commands


def cmd_check(args: argparse.Namespace) -> int:
    plugins, config = _load(args)
    print(f"{config.file}: OK ({len(config.devices)} devices, {len(config.transports)} "
          f"transports, {len(config.sinks)} sinks, plugins: {len(plugins.infos)})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    install_reactor()
    from twisted.internet import reactor
    from twisted.logger import Logger

    from hub.core import Hub
    from hub.logs import start_logging
    from hub.service import HubService, tune_gc

    plugins, config = _load(args)
    tune_gc(config.gc)
    start_logging(args.log_level or config.log_level, config.log_format)
    log = Logger(namespace="hub.cli")
    service = HubService(Hub(config, plugins, reactor))
    exit_code = [0]

    def failed(f):
        log.failure("hub failed to start", f)
        exit_code[0] = 1
        if reactor.running:
            reactor.stop()

    def start():
        d = service.startService()
        if d is not None:
            d.addCallback(lambda _: tune_gc(config.gc, started=True))
            d.addErrback(failed)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()  # handles SIGINT and SIGTERM by stopping, which stops the services
    return exit_code[0]


def _param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        return key, json.loads(value)  # numbers and booleans as such
    except ValueError:
        return key, value


def _who() -> str:
    import getpass
    import os

    return os.environ.get("SUDO_USER") or getpass.getuser()


def admin_request(state_dir: str, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send one request to the running hub's admin socket and return its answer."""
    import socket

    from hub.admin import socket_path

    path = socket_path(state_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise SystemExit(_fail(f"no hub is listening on {path} (is it running with this "
                                   "configuration?)", 2)) from None
        except PermissionError:
            raise SystemExit(_fail(f"no permission to use {path} (run as the hub's user)",
                                   2)) from None
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                raise SystemExit(_fail(f"no answer from the hub within {timeout:g} s", 1)) from None
            if not chunk:
                raise SystemExit(_fail("the hub closed the admin connection", 1))
            data += chunk
    return json.loads(data)


def cmd_command(args: argparse.Namespace) -> int:
    _, config = _load(args)
    request = {"op": "command", "device": args.device, "action": args.action,
               "channel": args.channel or "", "params": dict(args.param or []),
               "by": args.by or _who(), "ttl": args.ttl, "wait": not args.no_wait}
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


def cmd_metrics(args: argparse.Namespace) -> int:
    from hub.service import metrics_path

    _, config = _load(args)
    path = metrics_path(config.state_dir)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return _fail(f"no metrics at {path} (the hub writes them every few seconds while it "
                     "runs)", 1)
    if args.json:
        print(json.dumps(doc, ensure_ascii=False))
        return 0
    print(f"hub {doc['hub']} at {_iso(doc['ts'])}")
    print(_table([(m["name"], ",".join(f"{k}={v}" for k, v in m["labels"].items()) or "-",
                   f"{m['value']:g}") for m in doc["metrics"]], ("metric", "labels", "value")))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from hub.pluginmanager import PluginError, make_plugins

    try:
        plugins = make_plugins(strict=False)
    except PluginError as e:
        return _fail(f"plugin error: {e}")
    infos = sorted(plugins.infos, key=lambda i: (i.distribution != "hub-server", i.name))
    if args.json:
        for i in infos:
            print(json.dumps(i.__dict__, ensure_ascii=False))
        return 0
    rows = []
    for i in infos:
        what = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(i.contributes.items()))
        rows.append((i.name, f"{i.distribution} {i.version}".strip(),
                     f"ERROR {i.error}" if i.error else (what or ", ".join(i.hooks) or "-")))
    print(_table(rows, ("plugin", "distribution", "contributes")))
    print()
    for kind in ("transports", "models", "sinks", "sms_providers"):
        names = sorted(getattr(plugins, kind))
        print(f"{kind.replace('_', ' ')}: {', '.join(names) or '(none)'}")
    return 1 if any(i.error and i.error != "blocked" for i in infos) else 0


def cmd_devices(args: argparse.Namespace) -> int:
    plugins, config = _load(args)
    from twisted.internet.task import Clock

    from hub.core import Hub  # builds models and the registry, opens nothing

    hub = Hub(config, plugins, Clock())
    states: dict[str, float] = {}
    active: dict[str, int] = {}
    import os

    if os.path.exists(config.journal.path):
        j = _open_journal(config)
        states = j.device_states()
        for e in j.active_events():
            active[e.device] = active.get(e.device, 0) + 1
        j.close()
    now = time.time()
    rows = []
    for d in hub.registry:
        seen = states.get(d.id)
        online = seen is not None and now - seen <= d.offline_after
        rows.append(dict(id=d.id, name=d.name, model=d.model_name, transport=d.transport,
                         address=d.address, project=d.project, location=d.location,
                         last_seen=_iso(seen), online=online, active_events=active.get(d.id, 0),
                         offline_after=d.offline_after))
    if args.json:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False, default=str))
        return 0
    print(_table([(r["id"], r["name"], r["model"], r["transport"] or "-", r["project"] or "-",
                   "online" if r["online"] else "offline", r["last_seen"], r["active_events"])
                  for r in rows],
                 ("id", "name", "model", "transport", "project", "state", "last seen", "active")))
    return 0


def cmd_readings(args: argparse.Namespace) -> int:
    plugins, config = _load(args)
    if args.device not in {d.id for d in config.devices}:
        print(f"note: {args.device!r} is not declared in {config.file} "
              "(showing what the journal holds, e.g. for an auto-provisioned device)",
              file=sys.stderr)
    j = _open_journal(config)
    if args.latest:
        readings = j.latest(args.device, args.quantity)
    else:
        readings = j.history(args.device, args.quantity, args.channel, since=args.since,
                             until=args.until, limit=args.limit)
    j.close()
    for r in readings:
        if args.json:
            print(json.dumps({"device": r.device, "channel": r.channel, "quantity": r.quantity,
                              "value": r.value, "unit": r.unit, "ts": r.ts, "time": _iso(r.ts),
                              "quality": r.quality.value}, ensure_ascii=False))
    if not args.json:
        print(_table([(_iso(r.ts), r.channel or "-", r.quantity, f"{r.value:g}", r.unit,
                       r.quality.value) for r in readings],
                     ("time (UTC)", "channel", "quantity", "value", "unit", "quality")))
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    plugins, config = _load(args)
    j = _open_journal(config)
    events = j.active_events() if args.active else j.events(args.device, args.since, args.limit)
    j.close()
    if args.device and args.active:
        events = [e for e in events if e.device == args.device]
    if args.json:
        for e in events:
            print(json.dumps(e.to_dict(), ensure_ascii=False))
        return 0
    print(_table([(_iso(e.ts), e.id, e.device, e.kind.value, e.code, e.channel or "-",
                   e.level.value, e.state.value, e.message) for e in events],
                 ("time (UTC)", "id", "device", "kind", "code", "channel", "level", "state",
                  "message")))
    return 0


def cmd_events_ack(args: argparse.Namespace) -> int:
    """Acknowledge an alarm or fault through the running hub (the journal's one writer);
    escalation of that event stops."""
    _, config = _load(args)
    request = {"op": "ack", "event_id": args.event_id, "by": args.by or _who(),
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


def cmd_cursors(args: argparse.Namespace) -> int:
    """The sinks' journal cursors and how far behind each is; ``--drop`` forgets the cursor
    of a sink removed from the configuration (through the running hub, the journal's one
    writer), so retention no longer waits for it."""
    _, config = _load(args)
    if args.drop:
        answer = admin_request(config.state_dir, {"op": "drop_cursor", "name": args.drop,
                                                  "by": _who()}, 30.0)
        if not answer.get("ok"):
            return _fail(f"refused: {answer.get('error')}")
        print(f"cursor {args.drop!r} dropped")
        return 0
    j = _open_journal(config)
    cursors, last = j.cursors(), j.last_seq()
    j.close()
    if args.json:
        for name, seq in cursors.items():
            print(json.dumps({"name": name, "seq": seq, "behind": last - seq}))
        return 0
    print(_table([(name, seq, last - seq) for name, seq in cursors.items()],
                 ("cursor", "delivered up to seq", "records behind")))
    return 0


def _audit_path(config) -> str:
    import os

    path = config.audit.path
    if not os.path.exists(path):
        raise SystemExit(_fail(f"no audit log at {path} (has the hub run with {config.file}?)",
                               1))
    return path


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Recompute the audit chain and check every checkpoint's signature (read-only; works
    while the hub runs). Exit 0 when intact, 1 when anything was changed or removed."""
    from hub.audit import AuditKeyError, load_public, public_path, read_snapshot, verify
    from hub.audit.keys import key_fingerprint, verifier

    _, config = _load(args)
    pub_file = args.public_key or public_path(config.audit.key_file)
    try:
        key = load_public(pub_file)
    except AuditKeyError as e:
        return _fail(f"public key: {e}")
    path = _audit_path(config)
    entries, checkpoints = read_snapshot(path)
    report = verify(entries, checkpoints, verifier(key),
                    expect_every=config.audit.checkpoint_every)
    print(f"audit log {path}: {report.entries} entries, {report.checkpoints} checkpoints; "
          f"public key {key_fingerprint(key)} ({pub_file})")
    for seq, text in report.errors:
        print(f"BROKEN at seq {seq}: {text}")
    for text in report.warnings:
        print(f"warning: {text}")
    if not report.ok:
        print(f"FAILED: the audit log was altered; first broken seq {report.first_broken}")
        return 1
    print(f"OK: the chain is intact and signed up to seq {report.last_signed}")
    return 0


def cmd_audit_list(args: argparse.Namespace) -> int:
    """The audit trail, oldest first (read-only; works while the hub runs)."""
    from hub.audit.chain import utc_time
    from hub.audit.store import open_readonly, read_entries

    _, config = _load(args)
    db = open_readonly(_audit_path(config))
    try:
        since = utc_time(args.since) if args.since is not None else None
        rows = list(read_entries(db, subject=args.device, since=since))
    finally:
        db.close()
    out = []
    for r in rows:
        try:
            details = json.loads(r.body).get("details", {})
        except ValueError:
            details = {"unreadable body": r.body.decode("utf-8", "replace")}
        out.append({"seq": r.seq, "time": r.time, "actor": r.actor, "action": r.action,
                    "subject": r.subject, "details": details, "hash": r.hash})
    if args.json:
        for o in out:
            print(json.dumps(o, ensure_ascii=False))
        return 0
    print(_table([(o["seq"], o["time"], o["actor"], o["action"], o["subject"],
                   json.dumps(o["details"], ensure_ascii=False, sort_keys=True))
                  for o in out], ("seq", "time (UTC)", "actor", "action", "subject", "details")))
    return 0


# ---------------------------------------------------------------------------- parser


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



def build_parser(plugins: Any = None) -> argparse.ArgumentParser:
    """The argument parser; ``plugins`` (a HubPlugins) may add subcommands."""
    p = argparse.ArgumentParser(prog="hub", description="Electrical-fire monitoring IoT hub.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                        help=f"configuration file (default {DEFAULT_CONFIG})")
        return sp

    sp = with_config(sub.add_parser("run", help="run the hub"))
    sp.add_argument("--log-level", choices=("debug", "info", "warn", "error"))
    sp.set_defaults(func=cmd_run)
    with_config(sub.add_parser("check", help="validate a configuration")).set_defaults(
        func=cmd_check)
    sp = sub.add_parser("plugins", help="list plugins and what they contribute")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_plugins)
    sp = with_config(sub.add_parser("command", help="send a command to a device through the "
                                    "running hub (reset, silence, self_test, trip, close, ...)"))
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
    sp = with_config(sub.add_parser("metrics", help="counters and gauges of the running hub"))
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_metrics)
    sp = with_config(sub.add_parser("devices", help="list configured devices and their state"))
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_devices)

    sp = with_config(sub.add_parser("cursors", help="the sinks' journal cursors; drop the "
                                    "cursor of a removed sink"))
    sp.add_argument("--drop", metavar="NAME", help="forget this cursor (a sink removed for "
                    "good), so journal retention no longer waits for it")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_cursors)

    sp = with_config(sub.add_parser("readings", help="readings of a device from the journal"))
    sp.add_argument("--device", required=True)
    sp.add_argument("--quantity")
    sp.add_argument("--channel")
    sp.add_argument("--since", type=parse_time, help="15m, 2h, 7d or an ISO 8601 time")
    sp.add_argument("--until", type=parse_time)
    sp.add_argument("--limit", type=int, default=1000)
    sp.add_argument("--latest", action="store_true", help="latest value per channel/quantity")
    sp.add_argument("--json", action="store_true", help="one JSON object per line")
    sp.set_defaults(func=cmd_readings)

    sp = with_config(sub.add_parser("events", help="alarms, faults and state events"))
    sp.add_argument("--device")
    sp.add_argument("--since", type=parse_time)
    sp.add_argument("--limit", type=int, default=1000)
    sp.add_argument("--active", action="store_true", help="only raised, not yet cleared")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_events)
    # optional: plain `hub events` still lists
    ev = sp.add_subparsers(dest="events_command", metavar="WHAT")
    ack = ev.add_parser("ack", help="acknowledge an alarm or fault (stops its escalation)")
    ack.add_argument("event_id", metavar="EVENT_ID")
    ack.add_argument("--by", help="who acknowledges (recorded; default: your login)")
    ack.add_argument("--note", help="e.g. what was found on site")
    # SUPPRESS: given before or after `ack`, these land in the same place
    ack.add_argument("-c", "--config", default=argparse.SUPPRESS)
    ack.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    ack.set_defaults(func=cmd_events_ack)

    audit = command_group(sub, "audit", "the tamper-evident audit log of commands and "
                          "configuration changes")
    sp = with_config(audit.add_parser("verify", help="recompute the hash chain and check the "
                                      "signed checkpoints; exit 1 if anything was altered"))
    sp.add_argument("--public-key", metavar="PEM", help="the checkpoint key to trust (default: "
                    "the .pub.pem beside audit.key_file; better: a copy kept elsewhere)")
    sp.set_defaults(func=cmd_audit_verify)
    sp = with_config(audit.add_parser("list", help="show the audit trail"))
    sp.add_argument("--device", help="entries about this device (or with this subject)")
    sp.add_argument("--since", type=parse_time, help="15m, 2h, 7d or an ISO 8601 time")
    sp.add_argument("--json", action="store_true", help="one JSON object per line")
    sp.set_defaults(func=cmd_audit_list)
    from hub.api.cli import add_users_command  # `hub users ...` (the API's accounts)
    add_users_command(sub, with_config)
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
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
