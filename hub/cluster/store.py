"""Where a cluster node opens the platform store: the one seam to switch.

Every node reads the same platform store (devices created at run time, alarm lifecycle,
users). Today that is the SQLite file named by ``api.store`` — which works while the
nodes share one machine (the tests). For nodes on several machines it must be PostgreSQL:
make :func:`open_platform_store` return the PostgreSQL store (``store: {backend:
postgresql, dsn}``) and nothing else here changes.
"""

from __future__ import annotations

from typing import Any

from hub.config import HubConfig


def open_platform_store(config: HubConfig) -> Any | None:
    """The platform store of this configuration, open; ``None`` if it has none (no API)."""
    if config.api is None:
        return None
    from hub.store import SqliteStore

    store = SqliteStore(config.api.store_path)
    store.open()
    return store
