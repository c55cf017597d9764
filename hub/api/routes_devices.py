"""Devices: list, search and filter, detail with latest readings and active alarms, history
downsampled on the server; create, change and delete devices kept in the platform store.

Devices declared in the configuration are listed with ``source: config`` and cannot be
changed here. Devices created here are stored and join the running hub at once
(:mod:`hub.api.live` says which transports see them when).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from hub.api.authz import Principal, Tree
from hub.api.context import ApiContext
from hub.api.deps import Caller, Ctx, OrgTree, forbidden, invalid, not_found
from hub.api.live import DeviceRefused, change, clashes, go_away, go_live, registry_device
from hub.api.schemas import (
    ERRORS,
    DeviceDetail,
    DeviceIn,
    DeviceOut,
    DevicePage,
    DevicePatch,
    HistoryOut,
    ReadingOut,
)
from hub.api.views import (
    DeviceView,
    active_by_device,
    downsample,
    event_out,
    reading_out,
    settings_out,
)
from hub.model import QUANTITIES
from hub.store import Conflict
from hub.store import Device as StoredDevice

router = APIRouter(prefix="/api/devices", tags=["devices"])

#: the most readings one history request reads before downsampling (the newest of the range)
MAX_RAW_POINTS = 2_000_000


async def visible_devices(ctx: ApiContext, caller: Principal,
                          tree: Tree) -> dict[str, DeviceView]:
    index = await ctx.device_index()
    readable = caller.readable_nodes(tree)
    return {k: d for k, d in index.by_id.items() if tree.node_of_project(d.project) in readable}


async def device_in_scope(ctx: ApiContext, caller: Principal, tree: Tree,
                          device_id: str) -> DeviceView:
    d = (await ctx.device_index()).by_id.get(device_id)
    if d is None or not caller.can_read(tree, tree.node_of_project(d.project)):
        raise not_found("device")
    return d


def _out(ctx: ApiContext, d: DeviceView, active: int) -> DeviceOut:
    p = ctx.hub.presence
    # built from the hub's own typed state: no validation (a page is 100 of these, and
    # FastAPI checks the page against the schema as it serialises it)
    return DeviceOut.model_construct(
        id=d.id, name=d.name, project=d.project, model=d.model, transport=d.transport,
        location=d.location, source=d.source, online=p.is_online(d.id),
        last_seen=p.last_seen(d.id), active_alarms=active)


@router.get("", response_model=DevicePage, responses=ERRORS)
async def list_devices(
    caller: Caller, tree: OrgTree, ctx: Ctx,
    q: Annotated[str | None, Query(max_length=128, description="in id, name or location")]
    = None,
    project: Annotated[str | None, Query(max_length=64)] = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
    transport: Annotated[str | None, Query(max_length=64)] = None,
    online: bool | None = None,
    alarm: Annotated[Literal["alarm", "fault", "any", "none"] | None,
                     Query(description="devices with a raised alarm, fault, either, or none")]
    = None,
    source: Literal["config", "api"] | None = None,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DevicePage:
    index = await ctx.device_index()
    readable = caller.readable_nodes(tree)
    active = active_by_device(ctx.hub)
    needle = q.casefold() if q else None
    rows = []
    candidates = index.ordered if project is None else index.by_project.get(project, [])
    for d in candidates:
        if tree.node_of_project(d.project) not in readable:
            continue
        if project is not None and d.project != project:
            continue
        if model is not None and d.model != model:
            continue
        if transport is not None and d.transport != transport:
            continue
        if source is not None and d.source != source:
            continue
        if online is not None and bool(ctx.hub.presence.is_online(d.id)) != online:
            continue
        events = active.get(d.id, [])
        if alarm is not None:
            kinds = {e.kind.value for e in events}
            if (alarm == "none" and kinds) or (alarm == "any" and not kinds) or \
                    (alarm in ("alarm", "fault") and alarm not in kinds):
                continue
        if needle and needle not in f"{d.id}\n{d.name}\n{d.location}".casefold():
            continue
        rows.append((d, len(events)))
    page = rows[offset:offset + limit]
    return DevicePage(items=[_out(ctx, d, n) for d, n in page], total=len(rows), offset=offset,
                      limit=limit)


@router.get("/{device_id}", response_model=DeviceDetail, responses=ERRORS)
async def get_device(device_id: str, caller: Caller, tree: OrgTree, ctx: Ctx) -> DeviceDetail:
    d = await device_in_scope(ctx, caller, tree, device_id)
    events = active_by_device(ctx.hub).get(d.id, [])
    readings = await ctx.journal(lambda j: j.latest(d.id))
    return DeviceDetail(**_out(ctx, d, len(events)).model_dump(),
                        readings=[reading_out(r) for r in readings],
                        alarms=[event_out(e) for e in events],
                        settings=settings_out(ctx.hub, d))


def _check_device(caller: Principal, tree: Tree, project: str) -> None:
    node = tree.by_code.get(project)
    if node is None or not caller.can_read(tree, node):
        raise not_found("project")
    if not caller.can(tree, node, "manager"):
        raise forbidden("managing devices needs the manager role on the project")


@router.post("", response_model=DeviceOut, status_code=201,
             responses={**ERRORS, 409: {"description": "id taken"}})
async def create_device(body: DeviceIn, caller: Caller, tree: OrgTree, ctx: Ctx) -> DeviceOut:
    """Store a device (manager or admin of its project)."""
    _check_device(caller, tree, body.project)
    now = time.time()
    device = StoredDevice(body.id, body.name, body.project, body.model, body.transport,
                          body.address, body.location, caller.name, now, now,
                          settings=body.settings.model_dump(exclude_none=True))
    running = _runnable(ctx, device)
    why = clashes(ctx.hub, running)
    if why:
        raise HTTPException(409, why)
    try:
        await ctx.run(ctx.store.add_device, device)
    except Conflict as e:
        raise HTTPException(409, str(e)) from None
    finally:
        ctx.devices_changed()
    go_live(ctx.hub, running)
    await ctx.audit(caller.name, "device.created", body.id, body.model_dump())
    view = DeviceView(device.id, device.name, device.project, device.model, device.transport,
                      device.location, "api", device.address)
    return _out(ctx, view, 0)


def _runnable(ctx: ApiContext, device: StoredDevice):
    try:
        return registry_device(ctx.hub, device)
    except DeviceRefused as e:
        raise invalid(str(e), "body", e.field) from None


async def _stored(ctx: ApiContext, caller: Principal, tree: Tree, device_id: str) -> DeviceView:
    d = await device_in_scope(ctx, caller, tree, device_id)
    if d.source != "api":
        raise forbidden("this device is declared in the configuration file; change it there")
    if not caller.can(tree, tree.node_of_project(d.project), "manager"):
        raise forbidden("managing devices needs the manager role on the project")
    return d


@router.patch("/{device_id}", response_model=DeviceOut, responses=ERRORS)
async def update_device(device_id: str, body: DevicePatch, caller: Caller, tree: OrgTree,
                        ctx: Ctx) -> DeviceOut:
    d = await _stored(ctx, caller, tree, device_id)
    changes = body.model_dump(exclude_unset=True)
    if "settings" in changes:
        changes["settings"] = body.settings.model_dump(exclude_none=True) \
            if body.settings is not None else {}
    _check_device(caller, tree, changes.get("project", d.project))
    old = await ctx.run(ctx.store.get_device, d.id)
    new = dataclasses.replace(old, **changes)
    running = _runnable(ctx, new)
    others = [o for o in ctx.hub.registry.on_transport(running.transport or "")
              if o.id != d.id and o.address_key == running.address_key]
    if others:
        raise HTTPException(409, f"device {others[0].id!r} already has this address")
    try:
        stored = await ctx.run(ctx.store.update_device, d.id, **changes,
                               updated_ts=time.time())
    finally:
        ctx.devices_changed()
    change(ctx.hub, running)
    await ctx.audit(caller.name, "device.changed", d.id, changes)
    n = len(active_by_device(ctx.hub).get(d.id, []))
    return _out(ctx, DeviceView(stored.id, stored.name, stored.project, stored.model,
                                stored.transport, stored.location, "api", stored.address), n)


@router.delete("/{device_id}", status_code=204, responses=ERRORS)
async def delete_device(device_id: str, caller: Caller, tree: OrgTree, ctx: Ctx) -> None:
    d = await _stored(ctx, caller, tree, device_id)
    try:
        await ctx.run(ctx.store.delete_device, d.id)
    finally:
        ctx.devices_changed()
    go_away(ctx.hub, d.id)
    await ctx.audit(caller.name, "device.deleted", d.id, {"name": d.name, "project": d.project})


@router.get("/{device_id}/readings", response_model=list[ReadingOut], responses=ERRORS)
async def latest_readings(device_id: str, caller: Caller, tree: OrgTree, ctx: Ctx,
                          quantity: Annotated[str | None, Query(max_length=64)] = None
                          ) -> list[ReadingOut]:
    """The newest reading of each channel and quantity."""
    d = await device_in_scope(ctx, caller, tree, device_id)
    readings = await ctx.journal(lambda j: j.latest(d.id, quantity))
    return [reading_out(r) for r in readings]


@router.get("/{device_id}/history", response_model=HistoryOut,
            responses={**ERRORS, 422: {"description": "bad range or quantity"}})
async def history(
    device_id: str, caller: Caller, tree: OrgTree, ctx: Ctx,
    quantity: Annotated[str, Query(max_length=64)],
    since: Annotated[float, Query(ge=0, le=1e11, description="UTC epoch seconds")],
    until: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    channel: Annotated[str | None, Query(max_length=32)] = None,
    points: Annotated[int, Query(ge=1, le=5000, description="the point budget")] = 500,
) -> HistoryOut:
    """Readings of one quantity (and channel) over a range, as at most ``points`` buckets
    with min, max and average."""
    if quantity not in QUANTITIES:
        raise invalid(f"unknown quantity {quantity!r}", "query", "quantity")
    end = time.time() if until is None else until
    if end <= since:
        raise invalid("until must be after since", "query", "until")
    d = await device_in_scope(ctx, caller, tree, device_id)
    from hub.api.routes_analysis import long_history  # a long range reads the rollups
    rolled = await long_history(ctx, d.id, quantity, channel, since, end, points)
    if rolled is not None:
        return rolled

    def query(j):
        rows = j.history(d.id, quantity, channel, since, end, limit=MAX_RAW_POINTS)
        return len(rows), downsample(rows, since, end, points)
    raw, (width, out) = await ctx.journal(query)
    return HistoryOut(device=d.id, quantity=quantity, channel=channel, bucket_seconds=width,
                      raw_points=raw, points=out)
