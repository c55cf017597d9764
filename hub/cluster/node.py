"""The service tree of ``hub run --role edge`` and ``--role core``.

Both are the single process's :class:`hub.service.HubService` around the node's own
:class:`hub.core.Hub` (registry, command lifecycle, audit log, API, admin socket, a small
journal of the node's own events and commands), with:

* edge: the transports, given an :class:`hub.cluster.edge.EdgePort` instead of the hub;
  no sinks (the cores run them);
* core: no transports and no sinks of its own; the :class:`hub.cluster.core.Owner` runs
  one Hub per owned partition, each with its sinks.

On every node, every configured transport's commands go through
:class:`hub.cluster.remote.RemoteCommandTarget` to the edge that holds the device.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from twisted.application.service import Service
from twisted.internet import defer

from hub.cluster.link import NatsLink
from hub.cluster.reads import attach as attach_reads
from hub.cluster.remote import RemoteCommandTarget

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.service import HubService

ROLES = ("all", "edge", "core")


class ClusterService(Service):
    """The NATS link and, on an edge, the command subscriptions; on a core, the leases.
    Starting does not wait for NATS: a node that starts before its server (or while it
    restarts) serves its API and waits, retrying with backoff."""

    name = "cluster"

    def __init__(self, role: str, hub: Hub) -> None:
        settings = hub.config.cluster
        if settings is None:
            raise ValueError(f"--role {role} needs a cluster: section in {hub.config.file}")
        self.role = role
        self.hub = hub
        self.link = NatsLink(settings, hub)
        self.edge = None
        self.owner = None
        if role == "edge":
            from hub.cluster.edge import EdgePort

            self.edge = EdgePort(hub, self.link)
        else:
            from hub.cluster.core import Owner

            self.owner = Owner(hub, self.link)
        remote = RemoteCommandTarget(hub, self.link)
        for transport in hub.config.transports:
            hub.register_command_target(transport, remote)
        attach_reads(hub, self.link, self.owner)
        self._connecting: asyncio.Task | None = None

    def startService(self) -> None:
        super().startService()
        loop = getattr(self.hub.clock, "_asyncioEventloop", None) or asyncio.get_event_loop()
        self._connecting = loop.create_task(self.link.connect())
        if self.edge is not None:
            self.edge.start()
        if self.owner is not None:
            self.owner.start(loop)

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        if self.edge is not None:
            self.edge.stop()
        loop = getattr(self.hub.clock, "_asyncioEventloop", None) or asyncio.get_event_loop()
        if self.owner is not None:
            yield defer.Deferred.fromFuture(loop.create_task(self.owner.stop()))
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        yield defer.Deferred.fromFuture(loop.create_task(self.link.close()))


def build_service(role: str, hub: Hub) -> HubService:
    from hub.cluster.desk import node_desk
    from hub.service import HubService

    hub.desk_factory = node_desk  # the API's alarm desk, cluster-aware (hub.cluster.desk)
    cluster = ClusterService(role, hub)
    # Presence belongs to the partitions' Hubs: the node's own Hub sees no data, and its
    # presence would call every device offline after heartbeat interval × timeout count.
    hub.presence.stop()
    if role == "edge":
        return HubService(hub, port=cluster.edge, sinks=False, cluster=cluster)
    return HubService(hub, transports=False, sinks=False, cluster=cluster)
