"""Jinja2 rendering of the console's pages, with the headers every page carries."""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from hub import __version__
from hub.console.auth import Session
from hub.console.i18n import LANGUAGES, Translator

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")

env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(),
                  trim_blocks=True, lstrip_blocks=True)


def _json(value: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` block (never executed: the CSP
    allows no inline script); ``</`` cannot close the block."""
    return Markup(json.dumps(value, ensure_ascii=False, default=str).replace("</", "<\\/"))


env.filters["json"] = _json


def csp(request: Request) -> str:
    """The console's Content-Security-Policy: scripts only from the hub; images may also come
    from the configured tile server."""
    origin = request.app.state.ctx.settings.console.tile_origin
    img = "'self' data:" + (f" {origin}" if origin else "")
    return (f"default-src 'self'; img-src {img}; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
            "form-action 'self'; base-uri 'none'")


def render(request: Request, template: str, t: Translator, session: Session | None,
           status_code: int = 200, **values: Any) -> HTMLResponse:
    settings = request.app.state.ctx.settings.console
    html = env.get_template(template).render(
        request=request, t=t, s=session, languages=LANGUAGES, version=__version__,
        path=request.url.path, console=settings,
        js={"strings": t.client_strings(), "lang": t.html_lang,
            "tiles": {"url": settings.tile_url, "attribution": settings.tile_attribution,
                      "subdomains": settings.tile_subdomains}},
        **values)
    resp = HTMLResponse(html, status_code=status_code)
    resp.headers["content-security-policy"] = csp(request)
    return resp
