"""Where a cluster node opens the platform store, and the store's table for cluster desks.

Every node reads the same platform store (devices created at run time, alarm lifecycle,
users): the store ``api.store`` names — the SQLite file while the nodes share one machine
(the tests), PostgreSQL (``store: {backend: postgresql, dsn}``) for nodes on several machines.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # hub.store.sqlite imports this module for MIGRATION, hub.config it
    from hub.config import HubConfig

#: platform store migration 10: the alarm edges the cluster's
#: desks applied, by identity (:mod:`hub.cluster.desk`)
MIGRATION = """
    CREATE TABLE alarm_applied (edge TEXT PRIMARY KEY, alarm_id INTEGER NOT NULL);
"""


def open_platform_store(config: HubConfig, *, quick: bool = False,
                        on_health: Any = None) -> Any | None:
    """The platform store of this configuration, open; ``None`` if it has none (no API).
    ``quick``: PostgreSQL calls try once instead of waiting ``retry_seconds`` (for the
    reactor thread, which must not stop for long: it renews the partition leases)."""
    if config.api is None:
        return None
    from hub.store.settings import open_store

    settings = config.api.store
    if quick:
        settings = dataclasses.replace(settings, retry_seconds=0.0)
    return open_store(settings, on_health=on_health)
