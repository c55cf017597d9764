"""The console's history curves (历史曲线): devices, channels and a quantity over a range,
several circuits compared on one chart, zoomed with ECharts' dataZoom, and the shown
series exported as CSV or Excel (openpyxl).

Every series is the API's own history (:func:`hub.api.routes_devices.history`, scoped by
the user's principal): the chart and the export read the same function with the same
arguments, so the file holds what the chart shows (the export links follow the zoom).
"""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from hub.api import routes_devices
from hub.console.auth import Session
from hub.console.i18n import Translator
from hub.console.render import render
from hub.console.web import ctx_of, need, project_list, translator
from hub.model import QUANTITIES

router = APIRouter(include_in_schema=False)

RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
#: quantities offered first (the rest follow in the model's order)
COMMON = ("temperature", "residual_current", "current", "voltage", "active_power",
          "active_energy", "power_factor")
MAX_SERIES = 12
POINTS = 500


class Query:
    """A history request as the page's form sends it."""

    def __init__(self, request: Request) -> None:
        q = request.query_params
        self.project = q.get("project", "")[:64]
        self.devices = [d[:64] for d in q.getlist("device") if d][:MAX_SERIES]
        self.channels = [c[:32] for c in q.getlist("channel") if c][:64]
        quantity = q.get("quantity", "temperature")
        self.quantity = quantity if quantity in QUANTITIES else "temperature"
        self.range = q.get("range", "24h") if q.get("range", "24h") in RANGES else "24h"
        now = time.time()
        self.since, self.until = now - RANGES[self.range], now
        for name in ("since", "until"):
            raw = q.get(name, "")
            if raw:
                try:
                    setattr(self, name, _when(raw))
                except ValueError:
                    raise HTTPException(422, f"{name}: not a date and time") from None
        if self.until <= self.since:
            raise HTTPException(422, "until must be after since")

    def form(self) -> dict[str, Any]:
        return {"project": self.project, "devices": self.devices, "channels": self.channels,
                "quantity": self.quantity, "range": self.range}


def _when(text: str) -> float:
    """Epoch seconds, or a local ``YYYY-MM-DDTHH:MM`` (a datetime-local input)."""
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text).astimezone().timestamp()


async def _channels(request: Request, s: Session, devices: list[str],
                    quantity: str) -> dict[str, list[str]]:
    """The channels each device reports ``quantity`` on (from its latest readings)."""
    out: dict[str, list[str]] = {}
    for d in devices:
        try:
            rows = await routes_devices.latest_readings(d, s.principal, s.tree,
                                                        ctx_of(request), quantity=quantity)
        except HTTPException:
            continue
        out[d] = sorted({r.channel for r in rows})
    return out


async def _series(request: Request, s: Session, q: Query) -> list[dict[str, Any]]:
    ctx = ctx_of(request)
    index = await ctx.device_index()
    chans = await _channels(request, s, q.devices, q.quantity)
    out = []
    for d in q.devices:
        picked = [c for c in chans.get(d, []) if not q.channels or f"{d}|{c}" in q.channels]
        for ch in picked or [None]:
            if len(out) >= MAX_SERIES:
                break
            try:
                h = await routes_devices.history(d, s.principal, s.tree, ctx,
                                                 quantity=q.quantity, since=q.since,
                                                 until=q.until, channel=ch, points=POINTS)
            except HTTPException as e:
                if e.status_code == 404:
                    continue
                raise
            v = index.by_id.get(d)
            name = v.name if v else d
            out.append({"device": d, "name": name, "channel": ch or "",
                        "label": f"{name} · {ch}" if ch else name,
                        "raw": h.raw_points, "bucket": h.bucket_seconds,
                        "points": [[p.ts, p.avg, p.min, p.max, p.n] for p in h.points
                                   if p.n > 0]})
    return out


@router.get("/history")
async def history_page(request: Request) -> Response:
    s = await need(request)
    ctx = ctx_of(request)
    t = translator(request)
    try:
        q = Query(request)
    except HTTPException as e:
        return render(request, "error.html", t, s, status_code=422, message=str(e.detail))
    projects = await project_list(s)
    project = q.project or (projects[0].code if projects else "")
    devices = []
    if project:
        devices = (await routes_devices.list_devices(
            s.principal, s.tree, ctx, q=None, project=project, model=None, transport=None,
            online=None, alarm=None, source=None, offset=0, limit=500)).items
    chans = await _channels(request, s, q.devices, q.quantity)
    quantities = list(COMMON) + [n for n in QUANTITIES if n not in COMMON]
    f = q.form()
    f["project"] = project
    return render(request, "history.html", t, s, f=f, projects=projects, devices=devices,
                  channels=chans, names={d.id: d.name for d in devices},
                  quantities=quantities, ranges=list(RANGES),
                  unit=QUANTITIES[q.quantity].unit, query=str(request.url.query))


@router.get("/ui/history")
async def history_data(request: Request) -> Response:
    s = await need(request)
    q = Query(request)
    return JSONResponse({"since": q.since, "until": q.until, "quantity": q.quantity,
                         "unit": QUANTITIES[q.quantity].unit,
                         "series": await _series(request, s, q)})


def _rows(t: Translator, q: Query, series: list[dict[str, Any]]) -> list[list[Any]]:
    unit = QUANTITIES[q.quantity].unit
    rows = []
    for sr in series:
        for ts, avg, lo, hi, n in sr["points"]:
            when = datetime.fromtimestamp(ts, tz=t.zone).strftime("%Y-%m-%d %H:%M:%S")
            rows.append([when, sr["device"], sr["name"], sr["channel"],
                         t("q." + q.quantity) if t.has("q." + q.quantity) else q.quantity,
                         unit, avg, lo, hi, n])
    return rows


def _header(t: Translator) -> list[str]:
    return [t("export." + k) for k in ("time", "device", "name", "channel", "quantity",
                                       "unit", "avg", "min", "max", "n")]


@router.get("/history/export.{fmt}")
async def history_export(request: Request, fmt: str) -> Response:
    if fmt not in ("csv", "xlsx"):
        raise HTTPException(404, "csv or xlsx")
    s = await need(request)
    t = translator(request)
    q = Query(request)
    series = await _series(request, s, q)
    rows = _rows(t, q, series)
    stamp = datetime.fromtimestamp(q.since, tz=t.zone).strftime("%Y%m%d-%H%M")
    name = f"history-{q.quantity}-{stamp}.{fmt}"
    if fmt == "csv":
        buf = io.StringIO()
        buf.write("\ufeff")  # a BOM: spreadsheet programs then read the Chinese as UTF-8
        w = csv.writer(buf)
        w.writerow(_header(t))
        w.writerows(rows)
        body, media = buf.getvalue().encode("utf-8"), "text/csv; charset=utf-8"
    else:
        from openpyxl import Workbook

        wb = Workbook()
        ws = wb.active
        ws.title = (t("q." + q.quantity) if t.has("q." + q.quantity) else q.quantity)[:31]
        ws.append(_header(t))
        for r in rows:
            ws.append(r)
        ws.freeze_panes = "A2"
        for col, width in zip("ABCDEFGHIJ", (20, 14, 18, 8, 12, 8, 10, 10, 10, 6),
                              strict=True):
            ws.column_dimensions[col].width = width
        out = io.BytesIO()
        wb.save(out)
        body = out.getvalue()
        media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(body, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
