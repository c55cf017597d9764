"""The console's reports (数据汇总 / 报表): each project's monthly report, as the API serves
it (:func:`hub.api.routes_analysis.monthly_report`: HTML with its charts, PDF, Excel),
listed by month, viewed in the browser or downloaded; and the daily, weekly and monthly
reports the hub keeps (:mod:`hub.api.routes_reports`), listed by kind, downloaded, and made
now by operators and above."""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from hub.api import routes_analysis, routes_reports
from hub.console.forms import problem
from hub.console.render import render
from hub.console.web import ctx_of, need, posted, project_list, translator

router = APIRouter(include_in_schema=False)

MONTHS = 12
FORMATS = ("html", "pdf", "xlsx")
KINDS = ("daily", "weekly", "monthly")
_PERIOD = re.compile(r"^[0-9W-]{7,10}$")
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
async def reports(request: Request, project: str = "", kind: str = "daily", error: str = "",
                  made: str = "") -> Response:
    s = await need(request)
    t = translator(request)
    projects = await project_list(s)
    chosen = next((p for p in projects if p.code == project[:64]), None) or \
        (projects[0] if projects else None)
    kind = kind if kind in KINDS else "daily"
    kept: list[dict] = []
    if chosen is not None:
        by_period: dict[str, dict] = {}
        for r in await routes_reports.list_reports(chosen.id, s.principal, s.tree,
                                                   ctx_of(request), kind=kind):  # type: ignore[arg-type]
            row = by_period.setdefault(r.period, {"period": r.period, "created": r.created,
                                                  "files": {}})
            row["files"][r.format] = r.size
            row["created"] = max(row["created"], r.created)
        kept = sorted(by_period.values(), key=lambda r: r["period"], reverse=True)
    notice = t("reports.made", period=made[:10]) if made else ""
    return render(request, "reports.html", t, s, projects=projects, chosen=chosen,
                  months=recent_months(datetime.now().astimezone()), formats=FORMATS,
                  kinds=KINDS, kind=kind, kept=kept, error=error[:500], notice=notice,
                  may_make=chosen is not None and s.can(chosen.code, "operator"))


@router.post("/reports/{project_id}/make")
async def make_now(request: Request, project_id: int) -> Response:
    """The API's "make now" (operator or above): the last whole period, or the one typed."""
    s, form, t = await posted(request)
    kind = str(form.get("kind", ""))
    period = str(form.get("period", "")).strip()[:10] or None
    code = str(form.get("project", ""))[:64]
    back = {"project": code, "kind": kind if kind in KINDS else "daily"}
    if kind not in KINDS or not 1 <= project_id <= 2**62:
        return RedirectResponse(f"/reports?{urlencode({**back, 'error': t('form.invalid')})}",
                                status_code=303)
    try:
        out = await routes_reports.make_report(project_id, s.principal, s.tree,
                                               ctx_of(request), kind=kind,  # type: ignore[arg-type]
                                               period=period, format=None)
    except HTTPException as e:
        msg = t("reports.refused", reason=problem(e.detail))
        return RedirectResponse(f"/reports?{urlencode({**back, 'error': msg})}",
                                status_code=303)
    made = out[0].period if out else ""
    return RedirectResponse(f"/reports?{urlencode({**back, 'made': made})}#kept",
                            status_code=303)


@router.get("/reports/{project_id}/kept/{kind}/{period}.{fmt}")
async def kept_file(request: Request, project_id: int, kind: str, period: str,
                    fmt: str) -> Response:
    s = await need(request)
    if (fmt not in FORMATS or kind not in KINDS or not _PERIOD.match(period)
            or not 1 <= project_id <= 2**62):
        raise HTTPException(404, "no such report")
    return await routes_reports.download_report(project_id, s.principal, s.tree,
                                                ctx_of(request), kind=kind,  # type: ignore[arg-type]
                                                period=period, format=fmt)  # type: ignore[arg-type]


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
