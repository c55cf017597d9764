"""Who is at the browser: the API's session token in a cookie, and CSRF tokens for forms.

The console logs in through the API's own login (:func:`hub.api.routes_auth.login`) and
keeps the access token it answers in an HttpOnly, SameSite=Strict cookie (Secure when the
hub serves TLS); each request looks the token up exactly as a bearer token is looked up
(:func:`hub.api.deps._lookup`), so a console user is the API's principal, with its grants.

CSRF: a form post must carry a token that only a page of the console can know: an HMAC of
the (secret, HttpOnly) session token; before login, a random value also set as a
SameSite=Strict cookie (double submit). A post whose Origin names another site is refused
as well (the hub's ``Referrer-Policy: no-referrer`` makes browsers send ``Origin: null`` on
form posts; the token alone decides then).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import HTTPException, Request
from fastapi.responses import Response

from hub.api.authz import Principal, Tree
from hub.api.context import ApiContext
from hub.api.deps import _lookup

SESSION = "hub_session"
PRE_CSRF = "hub_csrf"
LANG = "hub_lang"


def csrf_for(token: str) -> str:
    return hmac.new(token.encode(), b"hub-console-csrf", hashlib.sha256).hexdigest()[:40]


def new_pre_csrf() -> str:
    return secrets.token_urlsafe(24)


def set_cookie(response: Response, request: Request, name: str, value: str,
               max_age: int | None = None, http_only: bool = True) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=http_only,
                        secure=request.url.scheme == "https", samesite="strict")


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        # the hub's Referrer-Policy: no-referrer makes browsers send "null": the token decides
        return True
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


class Session:
    """A logged-in console user: the API principal, the tree it is scoped in, its token."""

    def __init__(self, principal: Principal, tree: Tree, token: str) -> None:
        self.principal = principal
        self.tree = tree
        self.token = token
        self.csrf = csrf_for(token)

    @property
    def name(self) -> str:
        return self.principal.name

    def can(self, project: str, role: str) -> bool:
        """The API's own check (:meth:`Principal.can`) at a project's node."""
        return self.principal.can(self.tree, self.tree.node_of_project(project), role)


async def session_of(request: Request) -> Session | None:
    return await session_of_token(request, request.cookies.get(SESSION))


async def session_of_token(request: Request, token: str | None) -> Session | None:
    if not token or len(token) > 512 or token.startswith("hubk_"):
        return None
    ctx: ApiContext = request.app.state.ctx
    principal = await ctx.run(_lookup, ctx, token)
    if principal is None:
        return None
    return Session(principal, await ctx.tree(), token)


async def check_post(request: Request, session: Session | None, form_token: str | None
                     ) -> None:
    """Refuse (403) a post without the right CSRF token or from another origin."""
    sent = form_token or request.headers.get("x-csrf-token") or ""
    if session is not None:
        expected = session.csrf
    else:
        expected = request.cookies.get(PRE_CSRF) or ""
    if not same_origin(request) or not expected or not hmac.compare_digest(sent, expected):
        raise HTTPException(403, "bad or missing CSRF token; reload the page")
