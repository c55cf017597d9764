"""The console's reports (数据汇总 / 报表): each project's monthly report, as the API serves
it (:func:`hub.api.routes_analysis.monthly_report`: HTML with its charts, PDF, Excel),
listed by month, viewed in the browser or downloaded."""

from __future__ import annotations

import re
from datetime import datetime

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from hub.api import routes_analysis
from hub.console.render import render
from hub.console.web import ctx_of, need, project_list, translator

router = APIRouter(include_in_schema=False)

MONTHS = 12
FORMATS = ("html", "pdf", "xlsx")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def recent_months(now: datetime, n: int = MONTHS) -> list[str]:
    """This month and the ``n - 1`` before it, newest first, as YYYY-MM."""
    y, m = now.year, now.month
    out = []
    for _ in range(n):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    return out


@router.get("/reports")
async def reports(request: Request, project: str = "") -> Response:
    s = await need(request)
    t = translator(request)
    projects = await project_list(s)
    chosen = next((p for p in projects if p.code == project[:64]), None) or \
        (projects[0] if projects else None)
    return render(request, "reports.html", t, s, projects=projects, chosen=chosen,
                  months=recent_months(datetime.now().astimezone()), formats=FORMATS)


@router.get("/reports/{project_id}/{month}.{fmt}")
async def report_file(request: Request, project_id: int, month: str, fmt: str,
                      view: bool = False) -> Response:
    """The document from the API; ``view``: shown in the browser instead of saved."""
    s = await need(request)
    if fmt not in FORMATS or not _MONTH.match(month) or not 1 <= project_id <= 2**62:
        raise HTTPException(404, "no such report")
    out = await routes_analysis.monthly_report(project_id, s.principal, s.tree,
                                               ctx_of(request), month=month,
                                               format=fmt)  # type: ignore[arg-type]
    if view and fmt in ("html", "pdf"):
        out.headers["content-disposition"] = out.headers["content-disposition"].replace(
            "attachment", "inline")
    return out
