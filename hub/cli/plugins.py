"""``hub plugins``: what is installed and what each plugin contributes."""

from __future__ import annotations

import argparse
import json

from hub.cli.helpers import fail, table


def cmd_plugins(args: argparse.Namespace) -> int:
    from hub.pluginmanager import PluginError, make_plugins

    try:
        plugins = make_plugins(strict=False)
    except PluginError as e:
        return fail(f"plugin error: {e}")
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
    print(table(rows, ("plugin", "distribution", "contributes")))
    print()
    for kind in ("transports", "models", "sinks", "sms_providers"):
        names = sorted(getattr(plugins, kind))
        print(f"{kind.replace('_', ' ')}: {', '.join(names) or '(none)'}")
    return 1 if any(i.error and i.error != "blocked" for i in infos) else 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("plugins", help="list plugins and what they contribute")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_plugins)
