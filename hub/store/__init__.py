"""The platform store: what people edit (users, roles, the organisation tree, devices created
through the API, API keys, sessions), as opposed to the journal (what devices report).

One narrow interface, :class:`PlatformStore`, so that a cluster can later put PostgreSQL
behind it; the embedded default is :class:`SqliteStore` under ``state_dir``. Every method is
synchronous and short; the API calls them from a worker thread, never on the event loop.
"""

from hub.store.base import (
    ROLES,
    ApiKey,
    Conflict,
    Device,
    Grant,
    Node,
    NotFound,
    PlatformStore,
    Session,
    StoreError,
    User,
    role_rank,
)
from hub.store.sqlite import SqliteStore, store_path

__all__ = [
    "ROLES",
    "ApiKey",
    "Conflict",
    "Device",
    "Grant",
    "Node",
    "NotFound",
    "PlatformStore",
    "Session",
    "SqliteStore",
    "StoreError",
    "User",
    "role_rank",
    "store_path",
]
