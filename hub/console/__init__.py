"""The web console: server-rendered pages on the northbound API, served under ``/`` by the
same app and port (README "Web console")."""

from __future__ import annotations

import os
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC = os.path.join(os.path.dirname(__file__), "static")


def routers() -> list[APIRouter]:
    """The console's pages, partials and forms (each module one router)."""
    from hub.console import (
        web,
        web_desk,
        web_device_settings,
        web_gateways,
        web_history,
        web_inspections,
        web_ota,
        web_plans,
        web_reports,
        web_settings,
    )

    return [m.router for m in (web, web_desk, web_history, web_reports, web_settings,
                               web_plans, web_inspections, web_ota, web_gateways,
                               web_device_settings)]


def mount(app: FastAPI) -> None:
    """Add the console's pages and assets to the API's app (when the console is enabled)."""
    if not app.state.ctx.settings.console.enabled:
        return
    for router in routers():
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="console-static")

    # a browser asks for /favicon.ico for any document that names no icon of its own (a
    # downloaded PDF, a JSON error, a 404 page); answer with the console's icon, not a 404
    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(os.path.join(STATIC, "favicon.svg"), media_type="image/svg+xml",
                            headers={"Cache-Control": "public, max-age=86400"})

    default = app.exception_handlers.get(HTTPException)

    async def unauthorised(request: Request, exc: Exception) -> Response:
        # a console page (not the API, not a script's partial) sends people to the login
        if (isinstance(exc, HTTPException) and exc.status_code == 401
                and request.url.path.startswith("/ui/")
                and request.headers.get("hx-request")):
            return Response(status_code=204, headers={"HX-Redirect": "/login"})
        if isinstance(exc, HTTPException) and exc.status_code == 401 and \
                not request.url.path.startswith(("/api/", "/ui/")):
            back = request.url.path if request.url.path != "/" else None
            return RedirectResponse(f"/login?next={quote(back)}" if back else "/login",
                                    status_code=303)
        from fastapi.exception_handlers import http_exception_handler
        return await (default or http_exception_handler)(request, exc)  # type: ignore[arg-type]

    app.add_exception_handler(HTTPException, unauthorised)
