"""``hub audit verify`` and ``hub audit list`` (read-only; they work while the hub runs)."""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime

from hub.cli.helpers import (
    add_config_argument,
    add_output_arguments,
    arg_time,
    command_group,
    die,
    fail,
    format_time,
    load_config,
    table,
    time_argument,
    time_header,
)


def _audit_path(config) -> str:
    path = config.audit.path
    if not os.path.exists(path):
        die(f"no audit log at {path} (has the hub run with {config.file}?)", 1)
    return path


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Recompute the audit chain and check every checkpoint's signature. Exit 0 when
    intact, 1 when anything was changed or removed."""
    from hub.audit import AuditKeyError, load_public, public_path, read_snapshot, verify
    from hub.audit.keys import key_fingerprint, verifier

    _, config = load_config(args)
    pub_file = args.public_key or public_path(config.audit.key_file)
    try:
        key = load_public(pub_file)
    except AuditKeyError as e:
        return fail(f"public key: {e}")
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


def _shown(stored: str, utc: bool) -> str:
    """An entry's stored (signed, UTC) time as the other commands print times."""
    try:
        return format_time(datetime.fromisoformat(stored).timestamp(), utc) or stored
    except ValueError:
        return stored


def cmd_audit_list(args: argparse.Namespace) -> int:
    """The audit trail, oldest first."""
    from hub.audit.chain import utc_time
    from hub.audit.store import open_readonly, read_entries

    _, config = load_config(args)
    db = open_readonly(_audit_path(config))
    try:
        since = arg_time(args, "since")
        rows = list(read_entries(db, subject=args.device,
                                 since=utc_time(since) if since is not None else None))
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
    if args.json:  # "time" as stored and signed
        for o in out:
            print(json.dumps(o, ensure_ascii=False))
        return 0
    print(table([(o["seq"], _shown(o["time"], args.utc), o["actor"], o["action"], o["subject"],
                  json.dumps(o["details"], ensure_ascii=False, sort_keys=True))
                 for o in out], ("seq", time_header(args), "actor", "action", "subject",
                                 "details")))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    audit = command_group(sub, "audit", "the tamper-evident audit log of commands and "
                          "configuration changes")
    sp = add_config_argument(audit.add_parser("verify", help="recompute the hash chain and "
                                              "check the signed checkpoints; exit 1 if "
                                              "anything was altered"))
    sp.add_argument("--public-key", metavar="PEM", help="the checkpoint key to trust (default: "
                    "the .pub.pem beside audit.key_file; better: a copy kept elsewhere)")
    sp.set_defaults(func=cmd_audit_verify)
    sp = add_config_argument(audit.add_parser("list", help="show the audit trail"))
    sp.add_argument("--device", help="entries about this device (or with this subject)")
    sp.add_argument("--since", type=time_argument, help="15m, 2h, 7d or an ISO 8601 time")
    add_output_arguments(sp)
    sp.set_defaults(func=cmd_audit_list)
