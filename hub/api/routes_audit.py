"""The signed audit log, read-only, for auditors and admins (T/CFPA 023-2023 §6.4.3 b).

A platform-wide auditor or admin reads every entry; one granted on a unit or project reads
the entries about the devices and projects there (subject, or the device an entry names).
The file is read on a worker thread through its own read-only connection: its one writer
stays the hub's audit log. ``hub audit verify`` checks the chain and signatures.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from hub.api.deps import Caller, Ctx, OrgTree, forbidden
from hub.api.routes_devices import visible_devices
from hub.api.schemas import ERRORS

router = APIRouter(prefix="/api", tags=["audit"])

SCAN_BUDGET = 20_000


class AuditEntry(BaseModel):
    seq: int
    time: str
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_after: int


@router.get("/audit", response_model=AuditPage, responses=ERRORS)
async def audit_entries(
    caller: Caller, tree: OrgTree, ctx: Ctx,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    subject: Annotated[str | None, Query(max_length=128, description="a device, user, "
                                         "project code, event id, ...")] = None,
) -> AuditPage:
    """Entries after ``after`` (their seq), oldest first; keep ``next_after``."""
    audited = {n for n in caller.readable_nodes(tree) if caller.audits(tree, n)}
    if not audited:
        raise forbidden("reading the audit log needs the auditor or admin role")
    everything = 1 in audited
    subjects: set[str] = set()
    if not everything:
        devices = await visible_devices(ctx, caller, tree)
        subjects = {d for d, v in devices.items() if tree.node_of_project(v.project) in audited}
        subjects |= {tree.nodes[n].code for n in audited if tree.nodes[n].code}
    path = ctx.hub.audit_settings.path

    def read() -> AuditPage:
        from hub.audit.store import open_readonly, read_entries

        db = open_readonly(path)
        out: list[AuditEntry] = []
        cursor = after
        try:
            for scanned, row in enumerate(read_entries(db, subject=subject, after=after)):
                cursor = row.seq
                try:
                    details = json.loads(row.body).get("details", {})
                except ValueError:
                    details = {"unreadable body": row.body.decode("utf-8", "replace")}
                if not isinstance(details, dict):
                    details = {"details": details}
                if everything or row.subject in subjects or details.get("device") in subjects:
                    out.append(AuditEntry(seq=row.seq, time=row.time, actor=row.actor,
                                          action=row.action, subject=row.subject,
                                          details=details, hash=row.hash))
                if len(out) >= limit or scanned >= SCAN_BUDGET:
                    break
        finally:
            db.close()
        return AuditPage(items=out, next_after=cursor)
    return await ctx.run(read)
