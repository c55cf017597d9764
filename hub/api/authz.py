"""Who may see and do what: the organisation tree and a caller's scope in it.

A grant gives a role on a node and, through it, on the whole subtree below. Where several
grants cover a node the strongest applies. ``auditor`` reads and never acts. Deny by default:
a node outside every granted subtree does not exist for the caller (404, not 403, so that
existence does not leak). Devices belong to the project node whose ``code`` their
``project`` names; a device of a project the tree does not know belongs to the platform
(only platform-wide grants see it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from hub.store.base import ROLES, ROOT_ID, Grant, Node


class Tree:
    """An immutable view of the organisation tree (rebuilt when a node changes)."""

    def __init__(self, nodes: Iterable[Node]) -> None:
        self.nodes: dict[int, Node] = {n.id: n for n in nodes}
        self.by_code: dict[str, int] = {n.code: n.id for n in self.nodes.values() if n.code}
        self.children: dict[int, list[int]] = {}
        for n in self.nodes.values():
            if n.parent is not None:
                self.children.setdefault(n.parent, []).append(n.id)

    def ancestors(self, node_id: int) -> Iterator[int]:
        """``node_id`` and its ancestors up to the platform."""
        seen = 0
        cur: int | None = node_id
        while cur is not None and cur in self.nodes and seen < 64:
            yield cur
            cur = self.nodes[cur].parent
            seen += 1

    def subtree(self, node_id: int) -> set[int]:
        out: set[int] = set()
        stack = [node_id]
        while stack:
            n = stack.pop()
            if n in out:
                continue
            out.add(n)
            stack.extend(self.children.get(n, ()))
        return out

    def node_of_project(self, project: str) -> int:
        return self.by_code.get(project, ROOT_ID)

    def path(self, node_id: int) -> list[str]:
        return [self.nodes[n].name for n in reversed(list(self.ancestors(node_id)))]


@dataclass
class Principal:
    """The caller of a request: a user with a session, or an API key."""

    name: str  # what the audit log names: the user name, or "apikey:<id>"
    grants: list[Grant]
    user_id: int | None = None
    session_id: int | None = None
    api_key: str | None = None
    _cache: dict[int, tuple[int, bool]] = field(default_factory=dict, repr=False)

    def _at(self, tree: Tree, node_id: int) -> tuple[int, bool]:
        """(acting rank, may read) at ``node_id``."""
        hit = self._cache.get(node_id)
        if hit is not None:
            return hit
        up = set(tree.ancestors(node_id))
        rank, reads = 0, False
        for g in self.grants:
            if g.node_id in up:
                reads = True
                if g.role != "auditor":
                    rank = max(rank, ROLES.get(g.role, 0))
        self._cache[node_id] = (rank, reads)
        return rank, reads

    def can_read(self, tree: Tree, node_id: int) -> bool:
        return node_id in tree.nodes and self._at(tree, node_id)[1]

    def can(self, tree: Tree, node_id: int, role: str) -> bool:
        """May act as ``role`` (or stronger) at ``node_id``."""
        return node_id in tree.nodes and self._at(tree, node_id)[0] >= ROLES[role]

    def rank_at(self, tree: Tree, node_id: int) -> int:
        return self._at(tree, node_id)[0]

    def audits(self, tree: Tree, node_id: int = ROOT_ID) -> bool:
        """May read the audit log (auditor or admin on the node or above)."""
        up = set(tree.ancestors(node_id))
        return any(g.node_id in up and g.role in ("auditor", "admin") for g in self.grants)

    def readable_nodes(self, tree: Tree) -> set[int]:
        out: set[int] = set()
        for g in self.grants:
            if g.node_id in tree.nodes:
                out |= tree.subtree(g.node_id)
        return out

    def may_grant(self, tree: Tree, role: str, node_id: int) -> bool:
        """Grant ``role`` at ``node_id``: only inside its subtree, never above its own rank,
        and only as a manager or admin there."""
        rank = self.rank_at(tree, node_id)
        return rank >= ROLES["manager"] and ROLES.get(role, 99) <= rank
