"""Users, role grants and API keys.

A manager or admin manages users inside its subtree: it sees users that hold a grant inside
it, grants roles no stronger than its own there, and creates API keys the same way. A user
with a grant outside the caller's subtree is changed (password, disable) only by a caller
whose scope covers every grant of that user, so nobody reaches across its grade.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from hub.api.authz import Principal, Tree
from hub.api.context import ApiContext
from hub.api.deps import Caller, Ctx, OrgTree, forbidden, invalid, not_found
from hub.api.schemas import (
    ERRORS,
    ApiKeyIn,
    ApiKeyOut,
    GrantIn,
    GrantOut,
    UserIn,
    UserOut,
    UserPatch,
)
from hub.api.security import PolicyError, check_password_policy, hash_password, new_api_key
from hub.store import ApiKey, Conflict, User

router = APIRouter(prefix="/api", tags=["users"])


def _user_out(ctx: ApiContext, tree: Tree, user: User) -> UserOut:
    return UserOut(id=user.id, name=user.name, display_name=user.display_name,
                   disabled=user.disabled, locked=user.locked_until > ctx.now(),
                   grants=[GrantOut(id=g.id, role=g.role, node_id=g.node_id,
                                    node_path=tree.path(g.node_id))
                           for g in ctx.store.grants(user.id)])


def _visible(caller: Principal, tree: Tree, ctx: ApiContext, user: User) -> bool:
    if caller.user_id == user.id:
        return True
    mine = caller.readable_nodes(tree)
    return any(g.node_id in mine for g in ctx.store.grants(user.id))


def _manages(caller: Principal, tree: Tree, ctx: ApiContext, user: User) -> bool:
    """Every grant of ``user`` lies where the caller is a manager or more, of no weaker
    rank than the granted role."""
    grants = ctx.store.grants(user.id)
    return bool(grants) and all(caller.may_grant(tree, g.role, g.node_id) for g in grants)


def _need_manager(caller: Principal, tree: Tree) -> None:
    if not any(caller.rank_at(tree, n) >= 3 for n in caller.readable_nodes(tree)):
        raise forbidden("managing users needs the manager or admin role")


@router.get("/users", response_model=list[UserOut], responses=ERRORS)
async def list_users(caller: Caller, tree: OrgTree, ctx: Ctx) -> list[UserOut]:
    """Users holding a grant inside the caller's scope (managers and admins)."""
    _need_manager(caller, tree)

    def do() -> list[UserOut]:
        return [_user_out(ctx, tree, u) for u in ctx.store.list_users()
                if _visible(caller, tree, ctx, u)]
    return await ctx.run(do)


@router.post("/users", response_model=UserOut, status_code=201,
             responses={**ERRORS, 409: {"description": "name taken"}})
async def create_user(body: UserIn, caller: Caller, tree: OrgTree, ctx: Ctx) -> UserOut:
    """Create a user with one grant (more with POST /api/users/{id}/grants)."""
    if not caller.can_read(tree, body.node_id):
        raise not_found("node")
    if not caller.may_grant(tree, body.role, body.node_id):
        raise forbidden(f"you may not grant {body.role} there")
    try:
        check_password_policy(body.password, body.name)
    except PolicyError as e:
        raise invalid(str(e), "body", "password") from None

    def do() -> UserOut:
        user = ctx.store.add_user(body.name, hash_password(body.password), body.display_name,
                                  ctx.now())
        ctx.store.add_grant(user.id, body.role, body.node_id)
        return _user_out(ctx, tree, user)
    try:
        out = await ctx.run(do)
    except Conflict as e:
        raise HTTPException(409, str(e)) from None
    await ctx.audit(caller.name, "user.created", body.name,
                    {"role": body.role, "node": body.node_id})
    return out


async def _target(caller: Principal, tree: Tree, ctx: ApiContext, user_id: int,
                  manage: bool) -> User:
    def do() -> User | None:
        try:
            user = ctx.store.get_user(user_id)
        except LookupError:
            return None
        if not _visible(caller, tree, ctx, user):
            return None
        if manage and not _manages(caller, tree, ctx, user):
            raise forbidden("this user holds a grant beyond your own")
        return user
    user = await ctx.run(do)
    if user is None:
        raise not_found("user")
    return user


@router.get("/users/{user_id}", response_model=UserOut, responses=ERRORS)
async def get_user(user_id: int, caller: Caller, tree: OrgTree, ctx: Ctx) -> UserOut:
    user = await _target(caller, tree, ctx, user_id, manage=False)
    return await ctx.run(_user_out, ctx, tree, user)


@router.patch("/users/{user_id}", response_model=UserOut, responses=ERRORS)
async def update_user(user_id: int, body: UserPatch, caller: Caller, tree: OrgTree,
                      ctx: Ctx) -> UserOut:
    """Change the display name, password, disabled flag; unlock a locked account."""
    own = caller.user_id == user_id and body.disabled is None and body.unlock is None
    user = await _target(caller, tree, ctx, user_id, manage=not own)
    changes: dict[str, object] = {}
    if body.display_name is not None:
        changes["display_name"] = body.display_name
    if body.disabled is not None:
        changes["disabled"] = int(body.disabled)
    if body.unlock:
        changes.update(failed_logins=0, locked_until=0.0)
    if body.password is not None:
        try:
            check_password_policy(body.password, user.name)
        except PolicyError as e:
            raise invalid(str(e), "body", "password") from None

    def do() -> UserOut:
        if body.password is not None:
            changes["password_hash"] = hash_password(body.password)
        updated = ctx.store.update_user(user.id, **changes)
        if body.password is not None or body.disabled:
            ctx.store.revoke_user_sessions(user.id)
        return _user_out(ctx, tree, updated)
    out = await ctx.run(do)
    await ctx.audit(caller.name, "user.changed", user.name,
                    {"changed": sorted(k for k in changes if k != "password_hash")
                     + (["password"] if body.password is not None else [])})
    return out


@router.post("/users/{user_id}/grants", response_model=GrantOut, status_code=201,
             responses=ERRORS)
async def add_grant(user_id: int, body: GrantIn, caller: Caller, tree: OrgTree,
                    ctx: Ctx) -> GrantOut:
    user = await _target(caller, tree, ctx, user_id, manage=False)
    if not caller.can_read(tree, body.node_id):
        raise not_found("node")
    if not caller.may_grant(tree, body.role, body.node_id):
        raise forbidden(f"you may not grant {body.role} there")
    g = await ctx.run(ctx.store.add_grant, user.id, body.role, body.node_id)
    await ctx.audit(caller.name, "role.granted", user.name,
                    {"role": body.role, "node": body.node_id})
    return GrantOut(id=g.id, role=g.role, node_id=g.node_id, node_path=tree.path(g.node_id))


@router.delete("/users/{user_id}/grants/{grant_id}", status_code=204, responses=ERRORS)
async def remove_grant(user_id: int, grant_id: int, caller: Caller, tree: OrgTree,
                       ctx: Ctx) -> None:
    user = await _target(caller, tree, ctx, user_id, manage=False)
    grants = {g.id: g for g in await ctx.run(ctx.store.grants, user.id)}
    g = grants.get(grant_id)
    if g is None or not caller.can_read(tree, g.node_id):
        raise not_found("grant")
    if not caller.may_grant(tree, g.role, g.node_id):
        raise forbidden(f"you may not revoke {g.role} there")
    await ctx.run(ctx.store.remove_grant, grant_id)
    await ctx.run(ctx.store.revoke_user_sessions, user.id)
    await ctx.audit(caller.name, "role.revoked", user.name, {"role": g.role, "node": g.node_id})


# ---------------------------------------------------------------- API keys

def _key_out(k: ApiKey, full: str | None = None) -> ApiKeyOut:
    return ApiKeyOut(id=k.id, name=k.name, role=k.role, node_id=k.node_id,
                     created_ts=k.created_ts, revoked=k.revoked, key=full)


@router.get("/api-keys", response_model=list[ApiKeyOut], responses=ERRORS)
async def list_keys(caller: Caller, tree: OrgTree, ctx: Ctx) -> list[ApiKeyOut]:
    _need_manager(caller, tree)
    keys = await ctx.run(ctx.store.api_keys)
    return [_key_out(k) for k in keys if caller.may_grant(tree, k.role, k.node_id)]


@router.post("/api-keys", response_model=ApiKeyOut, status_code=201, responses=ERRORS)
async def create_key(body: ApiKeyIn, caller: Caller, tree: OrgTree, ctx: Ctx) -> ApiKeyOut:
    """A key for a machine client, bound to a role on a node; the answer is the only time
    the whole key is shown."""
    if caller.api_key is not None:
        raise forbidden("an API key cannot create API keys")
    if not caller.can_read(tree, body.node_id):
        raise not_found("node")
    if not caller.may_grant(tree, body.role, body.node_id):
        raise forbidden(f"you may not grant {body.role} there")
    key_id, full, secret_hash = new_api_key()
    key = ApiKey(key_id, body.name, secret_hash, body.role, body.node_id,
                 caller.user_id or 0, ctx.now())
    await ctx.run(ctx.store.add_api_key, key)
    await ctx.audit(caller.name, "api_key.created", key_id,
                    {"name": body.name, "role": body.role, "node": body.node_id})
    return _key_out(key, full)


@router.delete("/api-keys/{key_id}", status_code=204, responses=ERRORS)
async def revoke_key(key_id: str, caller: Caller, tree: OrgTree, ctx: Ctx) -> None:
    key = await ctx.run(ctx.store.api_key, key_id)
    if key is None or not caller.can_read(tree, key.node_id):
        raise not_found("API key")
    if not caller.may_grant(tree, key.role, key.node_id):
        raise forbidden("this key's role is beyond yours")
    await ctx.run(ctx.store.revoke_api_key, key_id)
    await ctx.audit(caller.name, "api_key.revoked", key_id, {"name": key.name})
