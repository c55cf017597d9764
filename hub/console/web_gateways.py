"""The console's gateways (网关), in the monitoring area: the DTUs, LwM2M endpoints and MQTT
clients between the hub and its devices, connected or not, from where, when last heard,
and the devices behind them — as :func:`hub.api.routes_gateways.list_gateways` shows them
to the user (only gateways with a device the user may see, and only those devices)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from hub.api import routes_gateways
from hub.console.render import render
from hub.console.web import ctx_of, need, translator

router = APIRouter(include_in_schema=False)

KINDS = ("dtu", "lwm2m", "mqtt", "simulator")
SHOWN = 1000


@router.get("/gateways")
async def gateways(request: Request, kind: str = "", connected: str = "",
                   q: str = "") -> Response:
    s = await need(request)
    ctx = ctx_of(request)
    t = translator(request)
    f = {"kind": kind if kind in KINDS else "",
         "connected": connected if connected in ("1", "0") else "", "q": q.strip()[:128]}
    rows = await routes_gateways.list_gateways(
        s.principal, s.tree, ctx, transport=None, kind=f["kind"] or None,
        connected={"1": True, "0": False}.get(f["connected"]), q=f["q"] or None,
        limit=SHOWN)
    index = await ctx.device_index()
    return render(request, "gateways.html", t, s, rows=sorted(rows, key=lambda g: g.id),
                  f=f, kinds=KINDS, names=index.by_id, more=len(rows) >= SHOWN,
                  online=sum(1 for g in rows if g.connected))
