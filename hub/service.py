"""The running hub as a Twisted service tree.

::

    HubService                       opens the journal and restores state first,
     ├─ journal-prune (TimerService)  closes it last, after everything else stopped;
     │                                 its passes start once every sink claimed its cursor
     ├─ sinks.<id> ...                started before transports: nothing arrives unread
     ├─ transports.<id> ...           stopped first: no new data while the rest drains
     ├─ api (uvicorn on the loop)      the northbound HTTP API, if configured (hub.api)
     └─ admin (UNIX socket)           `hub command` and other local tools

Children start in order, each waiting for the previous one (Twisted's own MultiService
ignores the Deferreds its children return), and stop in reverse order with every error
consumed so one failing child cannot keep the journal from being committed and closed.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import IService, MultiService
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger

from hub.admin import AdminService
from hub.config import GcSettings
from hub.core import Hub

_log = Logger(namespace="hub.service")

METRICS_INTERVAL = 10.0


def tune_gc(settings: GcSettings, started: bool = False) -> None:
    """Apply ``hub.gc`` (:class:`hub.config.GcSettings`) in ``hub run``: the thresholds at
    once, and once the hub has ``started``, the freeze. Tests never call this: it changes
    the whole process."""
    import gc

    if not started:
        gc.set_threshold(*settings.threshold)
    elif settings.freeze:
        gc.collect()
        gc.freeze()
        _log.info("gc: {n} objects frozen after start-up; thresholds {t}",
                  n=gc.get_freeze_count(), t=gc.get_threshold())


def metrics_path(state_dir: str) -> str:
    return os.path.join(state_dir, "metrics.json")


class OrderedMultiService(MultiService):
    """Start children one after another, waiting for each; stop them in reverse order."""

    @defer.inlineCallbacks
    def startService(self):
        self.running = 1
        for child in list(self):
            yield defer.maybeDeferred(child.startService)

    @defer.inlineCallbacks
    def stopService(self):
        self.running = 0
        first_error = None
        for child in reversed(list(self)):
            try:
                yield defer.maybeDeferred(child.stopService)
            except Exception as e:  # keep stopping the others; report the first
                _log.failure("stopping {name} failed", name=child.name)
                first_error = first_error or e
        if first_error is not None:
            raise first_error


class HubService(OrderedMultiService):
    """The whole hub: journal and state, sinks, transports, plugin lifecycle."""

    def __init__(self, hub: Hub, admin: bool = True, *, port: Any = None,
                 transports: bool = True, sinks: bool = True,
                 cluster: IService | None = None) -> None:
        """``admin=False`` leaves out the admin socket (tests on a task.Clock, where no
        reactor runs to close a real socket). Cluster roles (:mod:`hub.cluster.node`) give
        the transports another ``port`` (the edge's), leave out ``transports`` or
        ``sinks``, and add their ``cluster`` service, started before sinks and
        transports."""
        super().__init__()
        self.hub = hub
        self._closed = False
        self._warned_cursors: set[str] = set()
        # the prune timer starts first (it is the first child) but its passes wait until
        # every sink has claimed its cursor: before that, each configured sink's cursor
        # looks like one no sink owns ("belongs to no configured sink", a false alarm)
        self._sinks_started = False
        self.setName(f"hub:{hub.config.name}")
        j = hub.config.journal
        prune = TimerService(j.prune_interval, self._prune)
        prune.clock = hub.clock
        prune.setName("journal-prune")
        prune.setServiceParent(self)
        snapshot = TimerService(METRICS_INTERVAL, self.write_metrics)
        snapshot.clock = hub.clock
        snapshot.setName("metrics-snapshot")
        snapshot.setServiceParent(self)
        if cluster is not None:
            cluster.setServiceParent(self)
        for name, section in hub.config.sinks.items() if sinks else ():
            self._add(f"sinks.{name}", hub.plugins.sinks[section.type].factory(hub, name,
                                                                                section.options))
        for name, section in hub.config.transports.items() if transports else ():
            self._add(f"transports.{name}", hub.plugins.transports[section.type].factory(
                hub if port is None else port, name, section.options))
        api = hub.config.api
        if admin and api is not None and api.enabled:  # needs a running asyncio reactor
            from hub.api.service import ApiService
            self._add("api", ApiService(hub, api))
        if admin:
            AdminService(hub).setServiceParent(self)  # last to start, first to stop

    def _add(self, name: str, service: IService) -> None:
        service.setName(name)
        service.setServiceParent(self)

    def write_metrics(self) -> None:
        """Write the metrics to ``<state_dir>/metrics.json`` (atomically), where
        ``hub metrics`` reads them while the hub runs."""
        hub = self.hub
        hub.metrics.set("journal.last_seq", hub.journal.last_seq())
        hub.metrics.set("devices.total", len(hub.registry))
        hub.metrics.set("devices.online",
                        sum(1 for d in hub.registry if hub.presence.is_online(d.id)))
        hub.metrics.set("alarms.active", len(hub.alarms.active()))
        doc = {"hub": hub.config.name, "ts": hub.clock.seconds(),
               "metrics": hub.metrics.snapshot()}
        path = metrics_path(hub.config.state_dir)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
        os.replace(tmp, path)

    def _prune(self) -> None:
        if not self._sinks_started:
            return
        journal = self.hub.journal
        deleted = journal.prune(self.hub.clock.seconds())
        if deleted:
            _log.info("journal retention pruned {n} records", n=deleted)
        # Sinks claimed their cursors when they started, before the first pass here; a
        # cursor nobody claimed is a sink removed or renamed: it holds later records back.
        stale = journal.stale_cursors()
        self.hub.metrics.set("journal.stale_cursors", len(stale))
        last = journal.last_seq()
        for name in sorted(set(stale) - self._warned_cursors):
            _log.warn("journal cursor {name!r} belongs to no configured sink and holds "
                      "{n} records back from retention; if that sink is gone for good: "
                      "hub cursors --drop {name}", name=name, n=last - stale[name])
        self._warned_cursors = set(stale)

    @defer.inlineCallbacks
    def startService(self):
        self.hub.open()
        if IReactorThreads.providedBy(self.hub.clock):  # a real reactor (not a test clock)
            self.hub.journal.checkpoint_in_threads(
                lambda fn: threads.deferToThreadPool(self.hub.clock,
                                                     self.hub.clock.getThreadPool(), fn))
            self.hub.journal.commit_in_thread(self.hub.clock.callFromThread)
        try:
            yield super().startService()
            self._sinks_started = True
            self._prune()  # the pass the prune timer skipped at its start
            yield self.hub.plugins.call_in_turn("hub_startup", True, hub=self.hub)
        except BaseException:
            yield self.stopService()
            raise
        _log.info("hub {name} started: {n} devices, transports {t}, sinks {s} ({reactor})",
                  name=self.hub.config.name, n=len(self.hub.registry),
                  reactor=type(self.hub.clock).__name__,
                  t=", ".join(self.hub.config.transports) or "none",
                  s=", ".join(self.hub.config.sinks) or "none")

    @defer.inlineCallbacks
    def stopService(self):
        if self._closed:
            return
        self._closed = True
        try:
            yield super().stopService()
        finally:
            yield self.hub.plugins.call_in_turn("hub_shutdown", False, hub=self.hub)
            self.hub.journal.flush()
            self.write_metrics()
            seq = self.hub.journal.last_seq()
            self.hub.close()
            _log.info("hub {name} stopped; journal committed at seq {seq}",
                      name=self.hub.config.name, seq=seq)
