"""Login, refresh, logout, and who am I.

Failed logins count per account (stored: a lockout survives a restart) and per client
address (in memory). A locked account is told so, with the time it opens again, even for the
right password; an unknown name takes as long as a known one (a dummy hash is verified).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request

from hub.api.context import ApiContext
from hub.api.deps import Caller, Ctx, OrgTree
from hub.api.schemas import ERRORS, Error, GrantOut, LoginIn, MeOut, RefreshIn, TokenOut
from hub.api.security import new_token, token_hash, verify_password
from hub.store import User

router = APIRouter(prefix="/api/auth", tags=["auth"])


def _address(request: Request) -> str:
    return request.client.host if request.client else "?"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


def _issue(ctx: ApiContext, user: User, address: str) -> TokenOut:
    s = ctx.settings
    now = ctx.now()
    access, refresh = new_token("hubt"), new_token("hubr")
    ctx.store.add_session(user.id, token_hash(access), token_hash(refresh), now + s.token_ttl,
                          now + s.refresh_ttl, now, address)
    return TokenOut(access_token=access, expires_in=int(s.token_ttl), refresh_token=refresh,
                    refresh_expires_in=int(s.refresh_ttl))


def _login(ctx: ApiContext, name: str, password: str, address: str) -> tuple[str, object]:
    """On a worker thread: ("ok", TokenOut) | ("locked", until) | ("bad", None) |
    ("disabled", None)."""
    store, s = ctx.store, ctx.settings
    user = store.user_by_name(name)
    now = ctx.now()
    if user is not None and user.locked_until > now:
        verify_password(None, password)  # same time as any other answer
        return "locked", user.locked_until
    ok = verify_password(user.password_hash if user else None, password)
    if not ok or user is None:
        if user is not None:
            fails = user.failed_logins + 1
            changes: dict[str, object] = {"failed_logins": fails}
            if fails >= s.lockout_failures:
                changes = {"failed_logins": 0, "locked_until": now + s.lockout_seconds}
            store.update_user(user.id, **changes)
            if "locked_until" in changes:
                return "locked", changes["locked_until"]
        return "bad", None
    if user.disabled:
        return "disabled", None
    if user.failed_logins or user.locked_until:
        store.update_user(user.id, failed_logins=0, locked_until=0.0)
    return "ok", _issue(ctx, user, address)


@router.post("/login", response_model=TokenOut,
             responses={401: {"model": Error}, 423: {"model": Error}, 429: {"model": Error}})
async def login(body: LoginIn, request: Request, ctx: Ctx) -> TokenOut:
    """Exchange a user name and password for a bearer token and a refresh token."""
    address = _address(request)
    now = time.monotonic()
    wait = ctx.address_failures.blocked_for(address, now)
    if wait:
        await ctx.audit(body.username, "login.throttled", body.username, {"address": address})
        raise HTTPException(429, f"too many failed logins from {address}; try again in "
                            f"{int(wait) + 1} s", headers={"Retry-After": str(int(wait) + 1)})
    outcome, value = await ctx.run(_login, ctx, body.username, body.password, address)
    if outcome == "ok":
        ctx.address_failures.clear(address)
        await ctx.audit(body.username, "login", body.username, {"address": address})
        return value  # type: ignore[return-value]
    ctx.address_failures.fail(address, now)
    await ctx.audit(body.username, "login.failed", body.username,
                    {"address": address, "reason": outcome})
    if outcome == "locked":
        raise HTTPException(423, f"account {body.username!r} is locked after too many failed "
                            f"logins until {_iso(value)} (UTC); wait, or ask an admin to "
                            f"unlock it (hub users unlock {body.username})")
    if outcome == "disabled":
        raise HTTPException(401, "this account is disabled; ask an admin")
    raise HTTPException(401, "wrong user name or password")


def _refresh(ctx: ApiContext, refresh: str, address: str) -> TokenOut | None:
    session = ctx.store.session_by_refresh(token_hash(refresh))
    if session is None or session.revoked or session.refresh_expires <= ctx.now():
        return None
    user = ctx.store.get_user(session.user_id)
    if user.disabled:
        return None
    ctx.store.revoke_session(session.id)  # a refresh token works once
    return _issue(ctx, user, address)


@router.post("/refresh", response_model=TokenOut, responses={401: {"model": Error}})
async def refresh(body: RefreshIn, request: Request, ctx: Ctx) -> TokenOut:
    """A new token pair for a refresh token; the old pair stops working."""
    out = await ctx.run(_refresh, ctx, body.refresh_token, _address(request))
    if out is None:
        raise HTTPException(401, "the refresh token is unknown, expired or already used")
    return out


@router.post("/logout", status_code=204, responses=ERRORS)
async def logout(caller: Caller, ctx: Ctx) -> None:
    """Revoke the session of the token used (its refresh token too)."""
    if caller.session_id is not None:
        await ctx.run(ctx.store.revoke_session, caller.session_id)
    await ctx.audit(caller.name, "logout", caller.name, {})


@router.get("/me", response_model=MeOut, responses=ERRORS)
async def me(caller: Caller, tree: OrgTree) -> MeOut:
    """The caller and its grants."""
    return MeOut(name=caller.name, kind="api_key" if caller.api_key else "user",
                 grants=[GrantOut(id=g.id, role=g.role, node_id=g.node_id,
                                  node_path=tree.path(g.node_id)) for g in caller.grants])
