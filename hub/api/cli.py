"""``hub users``: accounts of the API from the command line (how the first admin is made).

::

    hub users add --role admin alice          # asks for the password twice
    hub users add --role operator --node 7 bob --password-stdin < pw.txt
    hub users passwd alice | disable bob | enable bob | unlock bob | list [--json]

It writes the platform store directly (whether or not the hub runs: SQLite WAL, or the
cluster's PostgreSQL) and records
each change in the audit log: through the running hub's admin socket, or, with no hub
running, in the audit log file itself.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from typing import Any

from hub.store import ROLES, PlatformStore, store_path
from hub.store.settings import StoreSettings, open_store


def _fail(message: str, code: int = 2) -> int:
    print(message, file=sys.stderr)
    return code


def _who() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser()


def _open(args: argparse.Namespace) -> tuple[Any, PlatformStore]:
    from hub.cli import _load

    _, config = _load(args)
    settings = (config.api.store if config.api is not None
                else StoreSettings(path=store_path(config.state_dir)))
    return config, open_store(settings)


def _audit(config: Any, action: str, subject: str, details: dict[str, Any]) -> None:
    """Through the running hub if there is one (the audit log has one writer), else into
    the file directly."""
    from hub.admin import socket_path

    details = {**details, "via": "cli"}
    if os.path.exists(socket_path(config.state_dir)):
        from hub.cli import admin_request

        try:
            answer = admin_request(config.state_dir, {"op": "audit", "by": _who(),
                                                      "action": action, "subject": subject,
                                                      "details": details}, 10.0)
        except SystemExit:
            answer = None
        if answer is not None:
            if not answer.get("ok"):
                print(f"warning: not audited: {answer.get('error')}", file=sys.stderr)
            return
    from twisted.internet.task import Clock

    from hub.audit import AuditLog
    from hub.audit.keys import load_or_create
    from hub.config import AuditSettings

    a = config.audit or AuditSettings(os.path.join(config.state_dir, "audit.sqlite"),
                                      os.path.join(config.state_dir, "audit_key.pem"))
    clock = Clock()
    clock.advance(time.time())
    log = AuditLog(a.path, clock=clock)
    os.makedirs(os.path.dirname(os.path.abspath(a.path)), exist_ok=True)
    log.set_key(load_or_create(a.key_file)[0])
    log.open()
    try:
        log.record_now(_who(), action, subject, details)
    finally:
        log.close()


def _password(args: argparse.Namespace, name: str) -> str:
    from hub.api.security import PolicyError, check_password_policy

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            raise SystemExit(_fail("the two passwords differ"))
    try:
        check_password_policy(password, name)
    except PolicyError as e:
        raise SystemExit(_fail(str(e))) from None
    return password


def cmd_add(args: argparse.Namespace) -> int:
    from hub.api.security import hash_password
    from hub.store import Conflict, NotFound

    config, store = _open(args)
    try:
        try:
            store.get_node(args.node)
        except NotFound:
            return _fail(f"no node {args.node} in the organisation tree (1 is the platform)")
        if store.user_by_name(args.name) is not None:
            return _fail(f"a user named {args.name!r} exists")
        password = _password(args, args.name)
        try:
            user = store.add_user(args.name, hash_password(password), args.display_name or "",
                                  time.time())
        except Conflict as e:
            return _fail(str(e))
        store.add_grant(user.id, args.role, args.node)
    finally:
        store.close()
    _audit(config, "user.created", args.name, {"role": args.role, "node": args.node})
    print(f"user {args.name} created with role {args.role} on node {args.node}")
    return 0


def _change(args: argparse.Namespace, action: str, **changes: Any) -> int:
    config, store = _open(args)
    try:
        user = store.user_by_name(args.name)
        if user is None:
            return _fail(f"no user named {args.name!r}")
        if "password_hash" in changes:
            from hub.api.security import hash_password

            changes["password_hash"] = hash_password(_password(args, args.name))
        store.update_user(user.id, **changes)
        if "password_hash" in changes or changes.get("disabled"):
            store.revoke_user_sessions(user.id)
    finally:
        store.close()
    _audit(config, action, args.name, {"changed": sorted(
        "password" if k == "password_hash" else k for k in changes)})
    print(f"user {args.name}: {action.split('.', 1)[1]}")
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    return _change(args, "user.password_changed", password_hash=None)


def cmd_disable(args: argparse.Namespace) -> int:
    return _change(args, "user.disabled", disabled=1)


def cmd_enable(args: argparse.Namespace) -> int:
    return _change(args, "user.enabled", disabled=0)


def cmd_unlock(args: argparse.Namespace) -> int:
    return _change(args, "user.unlocked", failed_logins=0, locked_until=0.0)


def cmd_list(args: argparse.Namespace) -> int:
    _, store = _open(args)
    try:
        rows = [(u, store.grants(u.id)) for u in store.list_users()]
        nodes = {n.id: n for n in store.nodes()}
    finally:
        store.close()
    now = time.time()
    out = [{"name": u.name, "display_name": u.display_name, "disabled": u.disabled,
            "locked": u.locked_until > now,
            "grants": [{"role": g.role, "node": g.node_id,
                        "node_name": nodes[g.node_id].name if g.node_id in nodes else "?"}
                       for g in grants]} for u, grants in rows]
    if args.json:
        for o in out:
            print(json.dumps(o, ensure_ascii=False))
        return 0
    if not out:
        print("no users yet: hub users add --role admin NAME")
    for o in out:
        state = "disabled" if o["disabled"] else "locked" if o["locked"] else "active"
        grants = ", ".join(f"{g['role']}@{g['node_name']}({g['node']})" for g in o["grants"])
        print(f"{o['name']:<20} {state:<8} {grants}")
    return 0


def add_users_command(sub: argparse._SubParsersAction, with_config: Any = None) -> None:
    """Register ``hub users ...`` on the main parser's subcommands."""
    if with_config is None:
        from hub.cli.helpers import add_config_argument as with_config
    users = sub.add_parser("users", help="accounts of the HTTP API (the first admin)")
    what = users.add_subparsers(dest="users_command", metavar="WHAT")
    what.required = True
    sp = with_config(what.add_parser("add", help="create a user with a role on a node"))
    sp.add_argument("name")
    sp.add_argument("--role", required=True, choices=sorted(ROLES))
    sp.add_argument("--node", type=int, default=1,
                    help="node of the organisation tree (default 1: the whole platform)")
    sp.add_argument("--display-name")
    sp.add_argument("--password-stdin", action="store_true",
                    help="read the password from the first line of standard input")
    sp.set_defaults(func=cmd_add)
    for name, func, text in (("passwd", cmd_passwd, "set a new password (ends its sessions)"),
                             ("disable", cmd_disable, "refuse its logins, end its sessions"),
                             ("enable", cmd_enable, "allow its logins again"),
                             ("unlock", cmd_unlock, "lift a lockout after failed logins")):
        sp = with_config(what.add_parser(name, help=text))
        sp.add_argument("name")
        if name == "passwd":
            sp.add_argument("--password-stdin", action="store_true")
        sp.set_defaults(func=func)
    sp = with_config(what.add_parser("list", help="users, their state and grants"))
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_list)

