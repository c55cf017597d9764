"""The platform store: what people edit (users, roles, the organisation tree, devices created
through the API, API keys, sessions), as opposed to the journal (what devices report).

One narrow interface, :class:`PlatformStore`: the embedded default is :class:`SqliteStore`
under ``state_dir``; in cluster mode :class:`PostgresStore` runs the same table code on one
PostgreSQL database every node shares (:mod:`hub.store.dialect`); ``api.store`` picks one
(:func:`hub.store.settings.open_store`). Every method is synchronous and short; the API
calls them from a worker thread, never on the event loop.
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
from hub.store.postgres import PostgresStore, StoreUnavailable
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
    "PostgresStore",
    "Session",
    "SqliteStore",
    "StoreError",
    "StoreUnavailable",
    "User",
    "role_rank",
    "store_path",
]
