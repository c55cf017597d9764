"""The records of the platform store and the one interface every backend implements."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Roles, weakest first. ``auditor`` reads (records and the audit log) and never acts; for
#: "may X grant Y" it ranks with ``viewer``.
ROLES: dict[str, int] = {"viewer": 1, "auditor": 1, "operator": 2, "manager": 3, "admin": 4}

#: Kinds of nodes of the organisation tree, from the root down (T/CFPA 023-2023 §6.3.1 f).
NODE_KINDS = ("platform", "unit", "subunit", "project")
#: Which kind may sit under which.
CHILD_KINDS: dict[str, tuple[str, ...]] = {
    "platform": ("unit", "project"),
    "unit": ("subunit", "project"),
    "subunit": ("subunit", "project"),
    "project": (),
}
#: The project fields of §6.3.1 d kept beside the name.
PROJECT_FIELDS = ("type", "address", "region", "latitude", "longitude", "leader",
                  "safety_officer", "created_date", "accepted_date")
ROOT_ID = 1


def role_rank(role: str) -> int:
    return ROLES.get(role, 0)


class StoreError(Exception):
    pass


class NotFound(StoreError, LookupError):
    pass


class Conflict(StoreError):
    """A name already taken, a node that still has children or devices, ..."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    password_hash: str
    display_name: str = ""
    disabled: bool = False
    created_ts: float = 0.0
    failed_logins: int = 0
    locked_until: float = 0.0


@dataclass(frozen=True)
class Node:
    id: int
    parent: int | None
    kind: str
    name: str
    code: str = ""  # a project's key, what devices name in `project:`
    fields: Mapping[str, Any] = field(default_factory=dict)
    created_ts: float = 0.0


@dataclass(frozen=True)
class Grant:
    id: int
    user_id: int
    role: str
    node_id: int


@dataclass(frozen=True)
class Session:
    id: int
    user_id: int
    token_hash: str
    refresh_hash: str
    expires: float
    refresh_expires: float
    created_ts: float
    address: str = ""
    revoked: bool = False


@dataclass(frozen=True)
class ApiKey:
    id: str  # public part of the key, what a client shows before the secret
    name: str
    key_hash: str
    role: str
    node_id: int
    created_by: int
    created_ts: float
    revoked: bool = False


@dataclass(frozen=True)
class Device:
    """A device created through the API (YAML devices stay in the configuration)."""

    id: str
    name: str
    project: str
    model: str
    transport: str
    address: Any = None
    location: str = ""
    created_by: str = ""
    created_ts: float = 0.0
    updated_ts: float = 0.0
    #: ``{"alarms": {rule: {...}}, "heartbeat": {interval, timeout_count}}`` as in the YAML
    settings: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


class PlatformStore(Protocol):
    """What the API needs from a store. Implementations are safe to call from several
    threads; each call is one short transaction."""

    def open(self) -> None: ...
    def close(self) -> None: ...
    def schema_version(self) -> int: ...

    # users
    def add_user(self, name: str, password_hash: str, display_name: str = "",
                 now: float = 0.0) -> User: ...
    def get_user(self, user_id: int) -> User: ...
    def user_by_name(self, name: str) -> User | None: ...
    def list_users(self) -> list[User]: ...
    def count_users(self) -> int: ...
    def update_user(self, user_id: int, **changes: Any) -> User: ...

    # role grants
    def add_grant(self, user_id: int, role: str, node_id: int) -> Grant: ...
    def remove_grant(self, grant_id: int) -> None: ...
    def get_grant(self, grant_id: int) -> Grant: ...
    def grants(self, user_id: int | None = None) -> list[Grant]: ...

    # the organisation tree
    def add_node(self, parent: int, kind: str, name: str, code: str = "",
                 fields: Mapping[str, Any] | None = None, now: float = 0.0) -> Node: ...
    def get_node(self, node_id: int) -> Node: ...
    def nodes(self) -> list[Node]: ...
    def update_node(self, node_id: int, name: str | None = None,
                    fields: Mapping[str, Any] | None = None) -> Node: ...
    def delete_node(self, node_id: int) -> None: ...

    # sessions (bearer tokens and their refresh tokens, stored hashed)
    def add_session(self, user_id: int, token_hash: str, refresh_hash: str, expires: float,
                    refresh_expires: float, now: float, address: str = "") -> Session: ...
    def session_by_token(self, token_hash: str) -> Session | None: ...
    def session_by_refresh(self, refresh_hash: str) -> Session | None: ...
    def revoke_session(self, session_id: int) -> None: ...
    def revoke_user_sessions(self, user_id: int) -> int: ...

    # API keys
    def add_api_key(self, key: ApiKey) -> ApiKey: ...
    def api_key(self, key_id: str) -> ApiKey | None: ...
    def api_keys(self) -> list[ApiKey]: ...
    def revoke_api_key(self, key_id: str) -> None: ...

    # devices created through the API
    def add_device(self, device: Device) -> Device: ...
    def get_device(self, device_id: str) -> Device | None: ...
    def devices(self) -> list[Device]: ...
    def update_device(self, device_id: str, **changes: Any) -> Device: ...
    def delete_device(self, device_id: str) -> None: ...

    # commands started through the API: where their lifecycle is in the journal
    def add_command(self, command_id: str, device: str, ts: float, ttl: float) -> None: ...
    def command(self, command_id: str) -> tuple[str, float, float] | None: ...
