"""Finding plugins, collecting the types they contribute, and calling them safely.

One :class:`HubPlugins` is built per hub (never at import time) by :func:`make_plugins`.
Every plugin, the hub's own built-ins included, comes from an entry point of the ``hub``
group, so a vendor's distribution is found exactly as ours are.

Policy, and why:

* A plugin that fails to import stops the hub, naming the distribution and entry point:
  silently running without a device model would drop that vendor's devices on the floor.
  ``hub plugins`` still lists it (``strict=False``), so the operator can see what broke.
* Two plugins contributing one type name stop the hub, naming both: which one would win
  is otherwise an accident of install order.
* Observer hooks are not called through pluggy's fan-out, which stops at the first
  exception; :meth:`HubPlugins.notify` calls each implementation on its own.

Environment switches: ``HUB_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the hub's own
distribution (reproducible tests); ``HUB_DISABLE_PLUGINS=a,b`` blocks plugins by entry-point
name (a broken or duplicate one, say); ``HUB_TRACE_PLUGINS=1`` logs every hook call.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
from twisted.internet import defer
from twisted.logger import Logger

from hub import hookspecs
from hub.contracts import DeviceModelType, SinkType, SmsProviderType, TransportType
from hub.metrics import Metrics

GROUP = "hub"
OWN_DISTRIBUTION = "hub-server"

_log = Logger(namespace="hub.plugins")

_TYPE_HOOKS: dict[str, tuple[str, type]] = {
    "transports": ("hub_register_transport_types", TransportType),
    "models": ("hub_register_device_models", DeviceModelType),
    "sinks": ("hub_register_sink_types", SinkType),
    "sms_providers": ("hub_register_sms_providers", SmsProviderType),
}


class PluginError(Exception):
    """A plugin could not be loaded or contradicts another one."""


@dataclass
class PluginInfo:
    """What ``hub plugins`` shows about one plugin."""

    name: str
    distribution: str
    version: str
    entry_point: str
    hooks: list[str] = field(default_factory=list)
    contributes: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""


def maybe_deferred(result: Any) -> defer.Deferred:
    """Whatever a hook returned (a value, a Deferred, a coroutine) as a Deferred."""
    if isinstance(result, defer.Deferred):
        return result
    if inspect.iscoroutine(result):
        return defer.Deferred.fromCoroutine(result)
    return defer.succeed(result)


class HubPlugins:
    """The hub's pluggy manager plus the type registries built from it."""

    def __init__(self, pm: pluggy.PluginManager, infos: list[PluginInfo], metrics: Metrics):
        self.pm = pm
        self.infos = infos
        self.metrics = metrics
        self.transports: dict[str, TransportType] = {}
        self.models: dict[str, DeviceModelType] = {}
        self.sinks: dict[str, SinkType] = {}
        self.sms_providers: dict[str, SmsProviderType] = {}

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def info(self, plugin_name: str) -> PluginInfo | None:
        return next((i for i in self.infos if i.name == plugin_name), None)

    def _origin(self, plugin_name: str) -> str:
        i = self.info(plugin_name)
        if i is None:
            return f"plugin {plugin_name!r}"
        return f"plugin {plugin_name!r} (distribution {i.distribution} {i.version})"

    def collect_types(self) -> None:
        """Ask every plugin for its types; refuse a name contributed twice."""
        for kind, (hookname, cls) in _TYPE_HOOKS.items():
            registry: dict[str, Any] = getattr(self, kind)
            owner: dict[str, str] = {}
            for impl in reversed(getattr(self.hook, hookname).get_hookimpls()):
                try:
                    contributed = impl.function() or []
                except Exception as e:
                    raise PluginError(
                        f"{self._origin(impl.plugin_name)}: {hookname} raised "
                        f"{type(e).__name__}: {e}"
                    ) from e
                for t in contributed:
                    if not isinstance(t, cls):
                        raise PluginError(
                            f"{self._origin(impl.plugin_name)}: {hookname} returned "
                            f"{t!r}, expected {cls.__name__} objects"
                        )
                    if t.name in registry:
                        raise PluginError(
                            f"{kind[:-1]} type {t.name!r} is contributed twice: by "
                            f"{self._origin(owner[t.name])} and by "
                            f"{self._origin(impl.plugin_name)}; uninstall or block one"
                        )
                    registry[t.name] = t
                    owner[t.name] = impl.plugin_name
                    i = self.info(impl.plugin_name)
                    if i is not None:
                        i.contributes.setdefault(kind, []).append(t.name)

    def notify(self, hookname: str, **kwargs: Any) -> None:
        """Call an observer hook's implementations one by one; a failure is logged and
        counted and the remaining implementations still run."""
        for impl in reversed(getattr(self.hook, hookname).get_hookimpls()):
            args = {k: kwargs[k] for k in impl.argnames}
            try:
                result = impl.function(**args)
            except Exception:
                self._observer_failed(hookname, impl.plugin_name)
                continue
            if result is not None:
                d = maybe_deferred(result)
                d.addErrback(lambda f, p=impl.plugin_name: self._observer_failed(hookname, p, f))

    def _observer_failed(self, hookname: str, plugin: str, failure: Any = None) -> None:
        self.metrics.inc("plugins.observer_errors", plugin=plugin, hook=hookname)
        _log.failure(
            "observer {plugin} failed in {hook}", failure=failure, plugin=plugin, hook=hookname
        )

    @defer.inlineCallbacks
    def call_in_turn(self, hookname: str, stop_on_error: bool, **kwargs: Any):
        """Call a lifecycle hook's implementations in turn, waiting on each result."""
        for impl in reversed(getattr(self.hook, hookname).get_hookimpls()):
            args = {k: kwargs[k] for k in impl.argnames}
            try:
                yield maybe_deferred(impl.function(**args))
            except Exception as e:
                if stop_on_error:
                    raise PluginError(f"{self._origin(impl.plugin_name)}: {hookname}: {e}") from e
                _log.failure("{plugin} failed in {hook}", plugin=impl.plugin_name, hook=hookname)


def _hub_entry_points(
    only_own: bool,
) -> Iterable[tuple[metadata.Distribution, metadata.EntryPoint]]:
    seen: set[tuple[str, str]] = set()
    for dist in metadata.distributions():
        dist_name = dist.metadata["Name"] or "?"
        if only_own and dist_name != OWN_DISTRIBUTION:
            continue
        for ep in dist.entry_points:
            # the same distribution can be visible twice on sys.path (editable + build dir)
            if ep.group == GROUP and (dist_name, ep.name) not in seen:
                seen.add((dist_name, ep.name))
                yield dist, ep


def make_plugins(
    *,
    metrics: Metrics | None = None,
    strict: bool = True,
    autoload: bool | None = None,
    blocked: Iterable[str] = (),
    extra: Iterable[tuple[str, object]] = (),
    trace: Callable[[str], None] | None = None,
) -> HubPlugins:
    """Build the plugin manager: load the ``hub`` entry points, register ``extra``
    ``(name, plugin)`` pairs, check hook names and collect the contributed types.

    ``strict=False`` records import failures in :attr:`HubPlugins.infos` instead of raising
    (for ``hub plugins``). ``autoload=None`` reads ``HUB_DISABLE_PLUGIN_AUTOLOAD``.
    """
    metrics = metrics or Metrics()
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    env_blocked = os.environ.get("HUB_DISABLE_PLUGINS", "")
    for name in [*blocked, *filter(None, (n.strip() for n in env_blocked.split(",")))]:
        pm.set_blocked(name)
    if autoload is None:
        autoload = not os.environ.get("HUB_DISABLE_PLUGIN_AUTOLOAD")
    infos: list[PluginInfo] = []
    where: dict[str, str] = {}
    for dist, ep in _hub_entry_points(only_own=not autoload):
        dist_name = dist.metadata["Name"] or "?"
        info = PluginInfo(ep.name, dist_name, dist.version or "?", f"{ep.name} = {ep.value}")
        if pm.is_blocked(ep.name):
            info.error = "blocked"
            infos.append(info)
            continue
        if ep.name in where:
            raise PluginError(
                f"two distributions register a plugin named {ep.name!r}: "
                f"{where[ep.name]} and {dist_name} {dist.version}"
            )
        where[ep.name] = f"{dist_name} {dist.version}"
        infos.append(info)
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as e:
            info.error = f"{type(e).__name__}: {e}"
            if strict:
                raise PluginError(
                    f"plugin {ep.name!r} (entry point '{ep.name} = {ep.value}' in group "
                    f"'{GROUP}' of distribution {dist_name} {dist.version}) failed to load: "
                    f"{info.error}"
                ) from e
            continue
        info.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
    for name, plugin in extra:
        pm.register(plugin, name=name)
        infos.append(
            PluginInfo(name, "(registered in process)", "", "",
                       sorted(h.name for h in pm.get_hookcallers(plugin) or []))
        )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        raise PluginError(f"{e} (is the hook name misspelled? see hub/hookspecs.py)") from e
    if trace is not None or os.environ.get("HUB_TRACE_PLUGINS"):
        out = trace or (lambda line: _log.info("{line}", line=line))
        pm.add_hookcall_monitoring(
            lambda name, impls, kw: out(f"hook {name} -> {[i.plugin_name for i in impls]}"),
            lambda outcome, name, impls, kw: None,
        )
    plugins = HubPlugins(pm, infos, metrics)
    plugins.collect_types()
    return plugins
