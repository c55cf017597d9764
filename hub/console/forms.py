"""Turning the API's refusals into what a form shows: pydantic's validation errors by
field, and an HTTPException's detail (a string, FastAPI's list of errors, or a dict with a
message) as one sentence."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import HTTPException
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError


def field_errors(e: ValidationError) -> dict[str, str]:
    """{field: message} of a model's validation errors (the first per field)."""
    out: dict[str, str] = {}
    for err in e.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body",)]
        key = loc[0] if loc else "form"
        out.setdefault(key, str(err.get("msg", "")).removeprefix("Value error, "))
    return out


def detail_errors(detail: Any) -> dict[str, str]:
    """{field: message} of a 422 the API raised itself (``hub.api.deps.invalid``)."""
    out: dict[str, str] = {}
    if isinstance(detail, list):
        for err in detail:
            if isinstance(err, dict):
                loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query")]
                out.setdefault(loc[0] if loc else "form", str(err.get("msg", "")))
    return out


def problem(detail: Any) -> str:
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        return "; ".join(str(d.get("msg", "")) for d in detail)
    if isinstance(detail, dict):
        return str(detail.get("message", detail))
    return str(detail)


def redirect(path: str, **query: Any) -> RedirectResponse:
    """303 to ``path`` with the non-empty ``query`` values (a form's outcome)."""
    q = {k: v for k, v in query.items() if v not in ("", None)}
    return RedirectResponse(f"{path}?{urlencode(q)}" if q else path, status_code=303)


async def fetch_one(get: Callable[..., Awaitable[Any]], item_id: int, s: Any,
                    ctx: Any) -> Any:
    """An API route's record by id, 404 for an id out of the API's range."""
    if not 1 <= item_id <= 2**62:
        raise HTTPException(404, "not found")
    return await get(item_id, s.principal, s.tree, ctx)


async def upload_answer(t: Any, upload: Awaitable[Any], refused: str) -> JSONResponse:
    """An API upload called for the page's script: ``{"id", "name"}``, or its 413/415 (and
    any other refusal, as ``refused`` with the reason) in the user's words."""
    try:
        f = await upload
    except HTTPException as e:
        key = {413: "hazard.too_large", 415: "hazard.bad_type"}.get(e.status_code)
        msg = t(key) if key else t(refused, reason=problem(e.detail))
        return JSONResponse({"error": msg}, status_code=e.status_code)
    return JSONResponse({"id": f.id, "name": f.name})


def inline(out: Response) -> Response:
    """A stored photo shown in the page rather than saved."""
    out.headers["content-disposition"] = out.headers.get(
        "content-disposition", "").replace("attachment", "inline")
    return out
