"""Units (and sub-units) and projects: the organisation tree of §6.3.1 d and f.

A unit is created under the platform or another unit; a project under either. Creating,
changing and deleting needs the manager role (or admin) on the parent (create) or the node.
Project search is fuzzy: every word of ``q`` must appear in the name or code, in order of
closeness (``difflib``), and nothing of ``q`` reaches SQL.
"""

from __future__ import annotations

import difflib
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from hub.api.authz import Principal, Tree
from hub.api.deps import Caller, Ctx, OrgTree, forbidden, not_found
from hub.api.schemas import (
    ERRORS,
    NodeOut,
    ProjectIn,
    ProjectOut,
    ProjectPatch,
    UnitIn,
    UnitPatch,
)
from hub.store import Conflict, Node
from hub.store.base import PROJECT_FIELDS

router = APIRouter(prefix="/api", tags=["organisation"])


def _node_out(tree: Tree, n: Node) -> NodeOut:
    return NodeOut(id=n.id, parent_id=n.parent, kind=n.kind, name=n.name, path=tree.path(n.id))


def _project_out(tree: Tree, n: Node) -> ProjectOut:
    fields = {k: v for k, v in n.fields.items() if k in PROJECT_FIELDS}
    return ProjectOut(id=n.id, name=n.name, code=n.code, unit_id=n.parent, path=tree.path(n.id),
                      **fields)


def _node(caller: Principal, tree: Tree, node_id: int, kinds: tuple[str, ...]) -> Node:
    n = tree.nodes.get(node_id)
    if n is None or n.kind not in kinds or not caller.can_read(tree, node_id):
        raise not_found(" or ".join(kinds))
    return n


def _conflict(e: Conflict) -> HTTPException:
    return HTTPException(409, str(e))


# ---------------------------------------------------------------- units

@router.get("/units", response_model=list[NodeOut], responses=ERRORS)
async def list_units(caller: Caller, tree: OrgTree) -> list[NodeOut]:
    """Units, sub-units (and the platform, for platform-wide grants) in the caller's scope."""
    mine = caller.readable_nodes(tree)
    return [_node_out(tree, n) for n in tree.nodes.values()
            if n.id in mine and n.kind != "project"]


@router.post("/units", response_model=NodeOut, status_code=201,
             responses={**ERRORS, 409: {"description": "not allowed there"}})
async def create_unit(body: UnitIn, caller: Caller, tree: OrgTree, ctx: Ctx) -> NodeOut:
    parent = _node(caller, tree, body.parent_id, ("platform", "unit", "subunit"))
    if not caller.can(tree, parent.id, "manager"):
        raise forbidden("creating a unit needs the manager role on its parent")
    kind = "unit" if parent.kind == "platform" else "subunit"
    try:
        n = await ctx.run(ctx.store.add_node, parent.id, kind, body.name, now=ctx.now())
    except Conflict as e:
        raise _conflict(e) from None
    ctx.tree_changed()
    await ctx.audit(caller.name, "unit.created", str(n.id), {"name": n.name,
                                                            "parent": parent.id})
    return _node_out(await ctx.tree(), n)


@router.get("/units/{unit_id}", response_model=NodeOut, responses=ERRORS)
async def get_unit(unit_id: int, caller: Caller, tree: OrgTree) -> NodeOut:
    return _node_out(tree, _node(caller, tree, unit_id, ("unit", "subunit")))


@router.patch("/units/{unit_id}", response_model=NodeOut, responses=ERRORS)
async def update_unit(unit_id: int, body: UnitPatch, caller: Caller, tree: OrgTree,
                      ctx: Ctx) -> NodeOut:
    n = _node(caller, tree, unit_id, ("unit", "subunit"))
    if not caller.can(tree, n.id, "manager"):
        raise forbidden("changing a unit needs the manager role")
    n = await ctx.run(ctx.store.update_node, n.id, name=body.name)
    ctx.tree_changed()
    await ctx.audit(caller.name, "unit.changed", str(n.id), {"name": n.name})
    return _node_out(await ctx.tree(), n)


@router.delete("/units/{unit_id}", status_code=204,
               responses={**ERRORS, 409: {"description": "not empty"}})
async def delete_unit(unit_id: int, caller: Caller, tree: OrgTree, ctx: Ctx) -> None:
    n = _node(caller, tree, unit_id, ("unit", "subunit"))
    if n.parent is None or not caller.can(tree, n.parent, "manager"):
        raise forbidden("deleting a unit needs the manager role on its parent")
    try:
        await ctx.run(ctx.store.delete_node, n.id)
    except Conflict as e:
        raise _conflict(e) from None
    ctx.tree_changed()
    await ctx.audit(caller.name, "unit.deleted", str(n.id), {"name": n.name})


# ---------------------------------------------------------------- projects

def _score(q: str, n: Node) -> float | None:
    """None if ``n`` does not match ``q``; else how closely (higher is closer)."""
    hay = f"{n.name} {n.code}".casefold()
    words = q.casefold().split()
    if words and not all(w in hay for w in words):
        # a word may still match loosely (a typo): accept close ratios
        ratio = max(difflib.SequenceMatcher(None, q.casefold(), n.name.casefold()).ratio(),
                    difflib.SequenceMatcher(None, q.casefold(), n.code.casefold()).ratio())
        return ratio if ratio >= 0.6 else None
    return 1.0 + difflib.SequenceMatcher(None, q.casefold(), n.name.casefold()).ratio()


@router.get("/projects", response_model=list[ProjectOut], responses=ERRORS)
async def list_projects(
    caller: Caller, tree: OrgTree,
    q: Annotated[str | None, Query(max_length=128, description="fuzzy search by name")] = None,
    region: Annotated[str | None, Query(max_length=128)] = None,
    unit_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> list[ProjectOut]:
    """Projects in the caller's scope; ``q`` ranks by closeness, ``region`` filters."""
    mine = caller.readable_nodes(tree)
    under = tree.subtree(unit_id) if unit_id is not None else None
    found: list[tuple[float, Node]] = []
    for n in tree.nodes.values():
        if n.kind != "project" or n.id not in mine:
            continue
        if under is not None and n.id not in under:
            continue
        if region is not None and str(n.fields.get("region", "")).casefold() != \
                region.casefold():
            continue
        score = 0.0 if not q else _score(q, n)
        if score is None:
            continue
        found.append((score, n))
    found.sort(key=lambda x: (-x[0], x[1].name))
    return [_project_out(tree, n) for _, n in found[offset:offset + limit]]


@router.post("/projects", response_model=ProjectOut, status_code=201,
             responses={**ERRORS, 409: {"description": "code taken"}})
async def create_project(body: ProjectIn, caller: Caller, tree: OrgTree,
                         ctx: Ctx) -> ProjectOut:
    parent = _node(caller, tree, body.unit_id, ("platform", "unit", "subunit"))
    if not caller.can(tree, parent.id, "manager"):
        raise forbidden("creating a project needs the manager role on its unit")
    fields = body.model_dump(include=set(PROJECT_FIELDS))
    try:
        n = await ctx.run(ctx.store.add_node, parent.id, "project", body.name, body.code,
                          fields, ctx.now())
    except Conflict as e:
        raise _conflict(e) from None
    ctx.tree_changed()
    await ctx.audit(caller.name, "project.created", body.code, {"name": body.name,
                                                               "unit": parent.id, **fields})
    return _project_out(await ctx.tree(), n)


@router.get("/projects/{project_id}", response_model=ProjectOut, responses=ERRORS)
async def get_project(project_id: int, caller: Caller, tree: OrgTree) -> ProjectOut:
    return _project_out(tree, _node(caller, tree, project_id, ("project",)))


@router.patch("/projects/{project_id}", response_model=ProjectOut, responses=ERRORS)
async def update_project(project_id: int, body: ProjectPatch, caller: Caller, tree: OrgTree,
                         ctx: Ctx) -> ProjectOut:
    n = _node(caller, tree, project_id, ("project",))
    if not caller.can(tree, n.id, "manager"):
        raise forbidden("changing a project needs the manager role")
    changes = body.model_dump(exclude_unset=True)
    name = changes.pop("name", None)
    n = await ctx.run(ctx.store.update_node, n.id, name=name, fields=changes)
    ctx.tree_changed()
    await ctx.audit(caller.name, "project.changed", n.code,
                    {**changes, **({"name": name} if name else {})})
    return _project_out(await ctx.tree(), n)


@router.delete("/projects/{project_id}", status_code=204,
               responses={**ERRORS, 409: {"description": "has devices"}})
async def delete_project(project_id: int, caller: Caller, tree: OrgTree, ctx: Ctx) -> None:
    n = _node(caller, tree, project_id, ("project",))
    if n.parent is None or not caller.can(tree, n.parent, "manager"):
        raise forbidden("deleting a project needs the manager role on its unit")
    if any(d.project == n.code for d in ctx.hub.registry):
        raise HTTPException(409, "devices of the configuration belong to this project")
    try:
        await ctx.run(ctx.store.delete_node, n.id)
    except Conflict as e:
        raise _conflict(e) from None
    ctx.tree_changed()
    await ctx.audit(caller.name, "project.deleted", n.code, {"name": n.name})
