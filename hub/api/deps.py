"""Request dependencies: the caller (bearer token or API key) and the shared context."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.api.authz import Principal, Tree
from hub.api.context import ApiContext
from hub.api.security import same, split_api_key, token_hash
from hub.store import Grant

bearer = HTTPBearer(auto_error=False, description="a session token from POST /api/auth/login,"
                    " or an API key (hubk_...)")

UNAUTHORISED = HTTPException(401, "authentication required: Authorization: Bearer <token>",
                             headers={"WWW-Authenticate": "Bearer"})


async def context(request: Request) -> ApiContext:
    # async: FastAPI runs a plain ``def`` dependency on a worker thread, a thread hop per
    # request for an attribute read
    return request.app.state.ctx


Ctx = Annotated[ApiContext, Depends(context)]


def _lookup(ctx: ApiContext, token: str) -> Principal | None:
    """Runs on a worker thread: store lookups."""
    return _lookup_until(ctx, token)[0]


def _lookup_until(ctx: ApiContext, token: str) -> tuple[Principal | None, float]:
    """The caller of ``token`` and until when that holds at most (a session's expiry)."""
    found = _find(ctx, token)
    return found if found is not None else (None, 0.0)


def _find(ctx: ApiContext, token: str) -> tuple[Principal, float] | None:
    store, now = ctx.store, ctx.now()
    if token.startswith("hubk_"):
        parts = split_api_key(token)
        if parts is None:
            return None
        key = store.api_key(parts[0])
        if key is None or key.revoked or not same(key.key_hash, token_hash(parts[1])):
            return None
        return Principal(f"apikey:{key.id}", [Grant(0, 0, key.role, key.node_id)],
                         api_key=key.id), float("inf")
    session = store.session_by_token(token_hash(token))
    # the hash was the lookup key; compare it again in constant time all the same
    if (session is None or session.revoked or session.expires <= now
            or not same(session.token_hash, token_hash(token))):
        return None
    user = store.get_user(session.user_id)
    if user.disabled:
        return None
    return Principal(user.name, store.grants(user.id), user_id=user.id,
                     session_id=session.id), session.expires


async def principal(ctx: Ctx,
                    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
                    ) -> Principal:
    if creds is None or not creds.credentials or len(creds.credentials) > 512:
        raise UNAUTHORISED
    key = token_hash(creds.credentials)
    p = ctx.principals.get(key)
    if p is None:
        generation = ctx.auth_generation
        p, until = await ctx.run(_lookup_until, ctx, creds.credentials)
        if p is not None:
            ctx.principals.put(key, p, until, generation)
    if p is None:
        raise HTTPException(401, "the token is unknown, expired or revoked; log in again",
                            headers={"WWW-Authenticate": "Bearer"})
    return p


Caller = Annotated[Principal, Depends(principal)]


async def tree(ctx: Ctx) -> Tree:
    return await ctx.tree()


OrgTree = Annotated[Tree, Depends(tree)]


def not_found(what: str) -> HTTPException:
    return HTTPException(404, f"no {what} (or not in your scope)")


def forbidden(why: str) -> HTTPException:
    return HTTPException(403, why)


def invalid(message: str, *loc: str | int) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors (one schema for every 422)."""
    return HTTPException(422, [{"type": "value_error", "loc": list(loc), "msg": message}])


# ---- resuming a live stream (events, alarm records, hazards): one set of parameters

#: ``after``: the seq to resume after (default: ``Last-Event-ID``, else from now)
ResumeAfter = Annotated[int | None, Query(ge=0, le=2**62, description="resume after this seq "
                                          "(default: Last-Event-ID, else from now)")]
#: ``idle_timeout``: end the stream after this many seconds with nothing to send
IdleTimeout = Annotated[float | None, Query(gt=0, le=86400, description="end the stream "
                                            "after this many seconds without an event")]
#: the ``Last-Event-ID`` header a reconnecting EventSource sends
LastEventId = Annotated[str | None, Header(max_length=20)]


def resume_after(after: int | None, last_event_id: str | None) -> int | None:
    """Where a stream resumes: ``after`` if given, else a numeric ``Last-Event-ID``."""
    if after is None and last_event_id and last_event_id.isdigit():
        return int(last_event_id)
    return after
