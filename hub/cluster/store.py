"""Where a cluster node opens the platform store.

Every node reads the same platform store (devices created at run time, alarm lifecycle,
users): the store ``api.store`` names — the SQLite file while the nodes share one machine
(the tests), PostgreSQL (``store: {backend: postgresql, dsn}``) for nodes on several machines.
"""

from __future__ import annotations

from typing import Any

from hub.config import HubConfig


def open_platform_store(config: HubConfig) -> Any | None:
    """The platform store of this configuration, open; ``None`` if it has none (no API)."""
    if config.api is None:
        return None
    from hub.store.settings import open_store

    return open_store(config.api.store)
