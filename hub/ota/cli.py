"""``hub ota``: the firmware repository and campaigns from the command line.

::

    hub ota firmware add --project p1|--global --version 1.1.10 --models nb-efd
                         [--delivery push] [--scheme semver] [--signature HEX] [--notes TEXT]
                         IMAGE                  # --global: every project's (no project)
    hub ota firmware list [--project p1] [--json]
    hub ota start --project p1 --firmware 3 [--canary 5] [--batch 50] [--failure-bound 0.1]
                  [--model nb-efd] [--from-version 1.1.1] [--device nb-0001 ...]
    hub ota list [--project p1] [--json]
    hub ota show 7 [--json]                 # progress and every device's phase
    hub ota history 7 nb-0001 [--json]
    hub ota pause|resume|cancel 7 [--note TEXT]

Reading and adding firmware use the platform store directly (like ``hub users``); starting
and steering a campaign goes through the running hub's admin socket, where the campaigns run.
Every act is audited (through the running hub when there is one).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from hub.cli.helpers import add_config_argument, add_output_arguments, fail, output, who


def _open(args: argparse.Namespace) -> tuple[Any, Any]:
    from hub.api.cli import _open as open_store

    return open_store(args)


def cmd_firmware_add(args: argparse.Namespace) -> int:
    from hub.api.cli import _audit
    from hub.ota.images import ImageError, ImageStore
    from hub.ota.settings import OtaSettings
    from hub.ota.version import VersionError, parse
    from hub.store.base import Conflict

    config, store = _open(args)
    settings = config.api.ota if config.api is not None else OtaSettings()
    images = ImageStore(os.path.join(config.state_dir, "firmware"), settings.max_image,
                        settings.vendor_keys, settings.require_signature)
    try:
        with open(args.image, "rb") as f:
            data = f.read()
        parse(args.version, args.scheme)
        checked = images.check(data, args.signature)
    except (OSError, VersionError, ImageError) as e:
        return fail(str(e))
    models = sorted({m.strip() for m in args.models.split(",") if m.strip()})
    project = None if args.is_global else args.project  # global: as the API, no project
    _audit(config, "firmware.uploaded", project or "global", {
        "project": project, "version": args.version, "models": models,
        "sha256": checked.sha256, "size": checked.size, "signed": checked.signed})
    images.save(data, checked.sha256)
    import time
    try:
        fw = store.firmware_add(project, models, args.version, args.scheme, args.delivery,
                                checked.size, checked.sha256, checked.signed, args.notes, who(),
                                time.time())
    except Conflict:
        owner = f"project {project}" if project else "the global repository"
        return fail(f"{owner} has firmware {args.version} already")
    print(f"firmware {fw.id}: {fw.version} for {', '.join(fw.models)} ({fw.size} bytes, "
          f"sha256 {fw.sha256}{', signed' if fw.signed else ''})")
    return 0


def cmd_firmware_list(args: argparse.Namespace) -> int:
    _, store = _open(args)
    rows = [f.as_dict() for f in store.firmware_list({args.project} if args.project else None)]
    output(args, rows, ["id", "project", "version", "models", "delivery", "size", "signed",
                        "uploaded_by"])
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    _, store = _open(args)
    rows = []
    for c in store.campaigns({args.project} if args.project else None):
        progress = store.campaign_progress(c.id)
        rows.append({**c.as_dict(), "progress": ", ".join(
            f"{n} {p}" for p, n in sorted(progress.items()))})
    output(args, rows, ["id", "project", "name", "state", "wave", "progress", "reason"])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    _, store = _open(args)
    c = store.campaign(args.campaign)
    if c is None:
        return fail(f"no campaign {args.campaign}")
    devices = [d.as_dict() for d in store.campaign_devices(c.id)]
    if not args.json:
        progress = store.campaign_progress(c.id)
        print(f"campaign {c.id} ({c.name}) in {c.project}: {c.state}, wave {c.wave}; "
              + ", ".join(f"{n} {p}" for p, n in sorted(progress.items()))
              + (f"; {c.reason}" if c.reason else ""))
    output(args, devices, ["device", "wave", "phase", "attempt", "result_code", "detail"])
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    _, store = _open(args)
    rows = store.ota_history(args.campaign, args.device)
    if not rows:
        return fail(f"no history of {args.device} in campaign {args.campaign}")
    output(args, rows, ["seq", "ts", "phase", "detail"])
    return 0


def cmd_act(args: argparse.Namespace) -> int:
    from hub.cli import _load
    from hub.cli.helpers import admin_request

    _, config = _load(args)
    request: dict[str, Any] = {"op": "ota", "act": args.act, "by": who()}
    if args.act == "start":
        request.update(project=args.project, firmware=args.firmware, canary=args.canary,
                       batch=args.batch, failure_bound=args.failure_bound,
                       models=args.model or None, from_versions=args.from_version or None,
                       devices=args.device or None, delivery=args.delivery, name=args.name)
    else:
        request.update(campaign=args.campaign, note=args.note)
    answer = admin_request(config.state_dir, request, 30.0)
    if not answer.get("ok"):
        return fail(str(answer.get("error")))
    c = answer["campaign"]
    print(f"campaign {c['id']} ({c['name']}): {c['state']}, wave {c['wave']}"
          + (f"; {c['reason']}" if c.get("reason") else ""))
    return 0


def admin_op(hub: Any, request: dict[str, Any]) -> Any:
    """The admin socket's ``ota`` operation (``hub ota start|pause|resume|cancel``)."""
    from hub.ota.manager import CampaignError

    ota = getattr(hub, "ota", None)
    if ota is None:
        return {"ok": False, "error": "firmware campaigns need the API (api: in the config)"}
    by = str(request.get("by") or "")
    if not by:
        return {"ok": False, "error": "who is asking? ('by' is required for the audit)"}
    act = request.get("act")
    try:
        if act == "start":
            project = str(request.get("project") or "")
            fw = ota.store.firmware(int(request.get("firmware") or 0))
            if fw is None or fw.project not in (None, project):
                return {"ok": False, "error": f"no firmware {request.get('firmware')} in "
                                              f"project {project!r}"}
            kw = {k: request.get(k) for k in ("models", "from_versions", "devices")}
            if not ota.select(project, fw, *kw.values()):
                return {"ok": False, "error": "no device matches"}
            hub.audit.record_now(by, "ota.campaign.created", project,
                                 {"project": project, "firmware_id": fw.id,
                                  "version": fw.version, **kw, "via": "cli"})
            c = ota.create(project, fw, str(request.get("name") or fw.version), **kw,
                           canary=int(request.get("canary", 1)),
                           batch=int(request.get("batch", 50)),
                           failure_bound=float(request.get("failure_bound", 0.1)),
                           delivery=request.get("delivery"), by=by)
        elif act in ("pause", "resume", "cancel"):
            cid = int(request.get("campaign") or 0)
            current = ota.store.campaign(cid)
            if current is None:
                return {"ok": False, "error": f"no campaign {cid}"}
            note = str(request.get("note") or "")
            hub.audit.record_now(by, f"ota.campaign.{act}", str(cid),
                                 {"project": current.project, "note": note, "via": "cli"})
            c = {"pause": lambda: ota.pause(cid, note or f"paused by {by}"),
                 "resume": lambda: ota.resume(cid),
                 "cancel": lambda: ota.cancel(cid, note or f"cancelled by {by}")}[act]()
        else:
            return {"ok": False, "error": f"unknown ota act {act!r}"}
    except (CampaignError, ValueError, TypeError) as e:
        return {"ok": False, "error": str(e)}
    return {"ok": True, "campaign": c.as_dict()}


def _reader(verbs: argparse._SubParsersAction, name: str, help: str,
            func: Any) -> argparse.ArgumentParser:
    """A subcommand that reads the store: ``-c`` and ``--json``."""
    p = verbs.add_parser(name, help=help)
    add_config_argument(p)
    add_output_arguments(p, times=False)
    p.set_defaults(func=func)
    return p


def add_ota_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ota", help="firmware updates: the repository and campaigns")
    verbs = p.add_subparsers(dest="ota_command", metavar="COMMAND")
    verbs.required = True

    fw = verbs.add_parser("firmware", help="the firmware repository")
    fw_verbs = fw.add_subparsers(dest="firmware_command", metavar="COMMAND")
    fw_verbs.required = True
    add = fw_verbs.add_parser("add", help="add an image (checked, SHA-256 recorded)")
    add_config_argument(add)
    add.add_argument("image", help="the image file")
    scope = add.add_mutually_exclusive_group(required=True)
    scope.add_argument("--project", help="the project whose image it is")
    scope.add_argument("--global", dest="is_global", action="store_true",
                       help="an image of every project (the API lets only admins add one)")
    add.add_argument("--version", required=True)
    add.add_argument("--models", required=True, help="device models it fits, comma-separated")
    add.add_argument("--scheme", default="auto", choices=("auto", "semver", "dotted"))
    add.add_argument("--delivery", default="pull", choices=("pull", "push"))
    add.add_argument("--signature", help="Ed25519 signature over the image (hex or base64)")
    add.add_argument("--notes", default="")
    add.set_defaults(func=cmd_firmware_add)
    _reader(fw_verbs, "list", "images of the repository", cmd_firmware_list).add_argument(
        "--project")

    start = verbs.add_parser("start", help="start a campaign (through the running hub)")
    add_config_argument(start)
    start.add_argument("--project", required=True)
    start.add_argument("--firmware", required=True, type=int, help="firmware id")
    start.add_argument("--name", default="")
    start.add_argument("--canary", type=int, default=1, help="devices of the first wave")
    start.add_argument("--batch", type=int, default=50, help="devices of each later wave")
    start.add_argument("--failure-bound", type=float, default=0.1,
                       help="pause when a wave's failed share exceeds this (0..1)")
    start.add_argument("--model", action="append", help="only this model (repeatable)")
    start.add_argument("--from-version", action="append",
                       help="only devices known at this version (repeatable)")
    start.add_argument("--device", action="append", help="only this device (repeatable)")
    start.add_argument("--delivery", choices=("pull", "push"))
    start.set_defaults(func=cmd_act, act="start")
    for act, text in (("pause", "start no further wave"), ("resume", "go on"),
                      ("cancel", "stop; devices not flashing end cancelled")):
        a = verbs.add_parser(act, help=text)
        add_config_argument(a)
        a.add_argument("campaign", type=int)
        a.add_argument("--note", default="")
        a.set_defaults(func=cmd_act, act=act)
    _reader(verbs, "list", "campaigns and their progress", cmd_list).add_argument("--project")
    _reader(verbs, "show", "a campaign's devices", cmd_show).add_argument("campaign", type=int)
    hist = _reader(verbs, "history", "one device's phases in a campaign", cmd_history)
    hist.add_argument("campaign", type=int)
    hist.add_argument("device")
