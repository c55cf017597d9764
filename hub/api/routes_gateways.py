"""Gateways: the DTUs, LwM2M endpoints and MQTT clients between the hub and its devices,
with how they are recognised, whether they are connected, from where, when last heard and
which devices sit behind them. Each running transport reports its own
(:class:`hub.contracts.GatewaySource`); a caller sees a gateway when it may see one of the
devices behind it, and only those devices."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hub.api.deps import Caller, Ctx, OrgTree
from hub.api.routes_devices import visible_devices
from hub.api.schemas import ERRORS, GatewayOut

router = APIRouter(prefix="/api/gateways", tags=["gateways"])


@router.get("", response_model=list[GatewayOut], responses=ERRORS)
async def list_gateways(
    caller: Caller, tree: OrgTree, ctx: Ctx,
    transport: Annotated[str | None, Query(max_length=64)] = None,
    kind: Annotated[str | None, Query(max_length=32, description="dtu, lwm2m, mqtt, "
                                      "simulator")] = None,
    connected: bool | None = None,
    q: Annotated[str | None, Query(max_length=128, description="in the gateway id")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[GatewayOut]:
    visible = await visible_devices(ctx, caller, tree)
    needle = q.casefold() if q else None
    out: list[GatewayOut] = []
    for g in ctx.hub.gateways():
        devices = [d for d in g.devices if d in visible]
        if not devices:
            continue
        if (transport is not None and g.transport != transport) or \
                (kind is not None and g.kind != kind) or \
                (connected is not None and g.connected != connected) or \
                (needle is not None and needle not in g.id.casefold()):
            continue
        out.append(GatewayOut(id=g.id, transport=g.transport, kind=g.kind, auth=g.auth,
                              connected=g.connected, address=g.address,
                              last_seen=g.last_seen, devices=devices))
        if len(out) >= limit:
            break
    return out
