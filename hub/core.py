"""The hub: where transports hand in records and everything else hangs off.

The path of every frame, in order::

    transport ─► Hub.ingest(device, records)
                   ├─ presence.seen()          liveness (and the online event)
                   ├─ alarms.process()         thresholds, device flags → edges
                   └─ journal.append()         group commit; the returned Deferred fires
                                               after the commit: only then may the
                                               transport ack upstream
                 after the commit: observers (hub_event_recorded, online/offline)

Timers in the alarm engine (delays) and in presence (offline) come back through
:meth:`Hub.record_events`, the same journal-then-observers path.

Transports see the hub only as a :class:`hub.contracts.TransportPort` (the methods under
"the transport port" below, with ``ingest``, ``resolve``, ``heartbeat``, ``clock`` and
``metrics``): never its journal, registry or command queue.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from hub.alarms import AlarmEngine, Threshold
from hub.audit import AuditLog, load_or_create, public_path
from hub.blocks import BlockKeys, ReadingBlock
from hub.commands import Commands
from hub.config import AuditSettings, HubConfig
from hub.contracts import CommandTarget, DeviceChange, DeviceModel, Gateway, GatewaySource
from hub.journal import Journal
from hub.metrics import Metrics
from hub.model import (
    ALARM_RULES,
    TS_MAX,
    TS_MIN,
    Command,
    Event,
    EventKind,
    EventState,
    Reading,
    Record,
    SchemaError,
)
from hub.pluginmanager import HubPlugins
from hub.presence import Presence
from hub.registry import Device, Registry

_log = Logger(namespace="hub.core")


def _process_user() -> str:
    """Who runs the hub: the actor of what the hub records on its own behalf."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container with a bare uid)
        return f"uid:{os.getuid()}"

_NO_THRESHOLDS: dict[str, Threshold] = {}
#: Quantities some alarm rule watches: a block's other readings cannot change an alarm.
_RULE_QUANTITIES = frozenset(rule.quantity for rule in ALARM_RULES.values())


class Hub:
    """One hub instance: configuration, plugins, registry, journal, alarm engine, presence.

    Built from a validated configuration; nothing touches the network or the disk until
    :meth:`open` (called by :class:`hub.service.HubService` on start).
    """

    def __init__(self, config: HubConfig, plugins: HubPlugins, clock: IReactorTime,
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.plugins = plugins
        self.clock = clock
        self.metrics = metrics or plugins.metrics
        self.models = self._build_models()
        self.registry = Registry(config, self.models, self.metrics)
        j = config.journal
        self.journal = Journal(
            j.path, clock=clock, commit_interval=j.commit_interval, max_batch=j.max_batch,
            max_bytes=j.max_bytes, warn_ratio=j.warn_ratio, retention=j.retention,
            synchronous=j.synchronous, metrics=self.metrics, on_fault=self.record_events,
            recent_rows=j.recent_rows, recent_rows_held=j.recent_rows_held,
        )
        self.alarms = AlarmEngine(clock, self._thresholds, self.record_events)
        self.presence = Presence(clock, self._offline_after, self.record_events)
        self.commands = Commands(self)
        a = config.audit or AuditSettings(
            os.path.join(config.state_dir, "audit.sqlite"),
            os.path.join(config.state_dir, "audit_key.pem"))
        self.audit_settings = a
        # the key is loaded (or made) by open(), which touches the disk
        self.audit = AuditLog(a.path, clock=clock, checkpoint_every=a.checkpoint_every,
                              checkpoint_interval=a.checkpoint_interval, metrics=self.metrics)
        self._offline_overrides: dict[str, float] = {}  # set by transports (LwM2M lifetime)
        self._valid_keys: set[tuple[str, str]] = set()  # (quantity, channel) already checked
        # ReadingBlock key sets already checked -> whether one of them has an alarm rule
        self._block_keys: dict[BlockKeys, bool] = {}

    def _build_models(self) -> dict[str, DeviceModel]:
        models: dict[str, DeviceModel] = {}
        for name, section in self.config.models.items():
            models[name] = self.plugins.models[section.type].factory(section.options)
        for rule in self.config.provisioning:
            if rule.model not in models:  # a model type used directly, without options
                models[rule.model] = self.plugins.models[rule.model].factory(None)
        return models

    def _thresholds(self, device: str) -> dict[str, Threshold]:
        d = self._device_or_none(device)
        return d.alarms if d is not None else _NO_THRESHOLDS

    def _offline_after(self, device: str) -> float:
        override = self._offline_overrides.get(device)
        if override is not None:
            return override
        d = self._device_or_none(device)
        p = self.config.presence
        return d.offline_after if d is not None else p.heartbeat_interval * p.timeout_count

    def set_offline_after(self, device: str, seconds: float | None) -> None:
        """Let a transport say how long ``device`` may be silent (an LwM2M registration's
        lifetime plus a grace) instead of heartbeat interval × timeout count; ``None``
        restores that. The device's deadline moves at once."""
        if seconds is None:
            self._offline_overrides.pop(device, None)
        else:
            self._offline_overrides[device] = seconds
        self.presence.reschedule(device)

    def _device_or_none(self, device: str) -> Device | None:
        try:
            return self.registry.get(device)
        except LookupError:
            return None

    # ------------------------------------------------------------------ the transport port
    # (hub.contracts.TransportPort; resolve, ingest, heartbeat and set_offline_after are
    # below and above: the data path is the hub's own)

    def devices(self, transport: str) -> list[Device]:
        """The devices configured (or provisioned so far) on ``transport``."""
        return self.registry.on_transport(transport)

    def device(self, device_id: str) -> Device | None:
        """The device ``device_id``, or ``None`` if the hub does not know it."""
        return self._device_or_none(device_id)

    def watch_devices(self, transport: str,
                      listener: Callable[[DeviceChange], None]) -> Callable[[], None]:
        """Tell ``listener`` of each device change on ``transport`` (a device that moved
        between transports: ``removed`` on the old one, ``added`` on the new)."""
        def on_change(change: DeviceChange) -> None:
            now, before = change.device, change.previous
            if change.kind != "changed" or before is None:
                if now.transport == transport:
                    listener(change)
            elif now.transport == transport and before.transport == transport:
                listener(change)
            elif before.transport == transport:
                listener(DeviceChange("removed", before))
            elif now.transport == transport:
                listener(DeviceChange("added", now))
        return self.registry.watch(on_change)

    def gateways(self) -> list[Gateway]:
        """The gateways of every running transport that reports them."""
        out: list[Gateway] = []
        for target in list(self.commands.targets.values()):
            if isinstance(target, GatewaySource):
                out.extend(target.gateways())
        return out

    def register_command_target(self, transport: str, target: CommandTarget) -> None:
        self.commands.register_target(transport, target)

    def unregister_command_target(self, transport: str) -> None:
        self.commands.unregister_target(transport)

    def command_sent(self, command: Command) -> None:
        self.commands.mark_sent(command)

    def command_queued(self, command: Command, detail: str, again: bool = False) -> None:
        self.commands.mark_queued(command, detail, again)

    def command_waiting(self, command_id: str) -> bool:
        """Whether ``command_id`` was accepted and is not on the wire yet."""
        return command_id in self.commands.pending

    def resume_commands(self, devices: Sequence[str], since: float) -> int:
        """Commands for ``devices`` accepted since ``since`` and unfinished in the journal
        go to their transports again (for what is left of their time to live); returns how
        many."""
        commands = self.journal.unfinished_commands(devices, since)
        for command in commands:
            self.commands.resume(command)
        return len(commands)

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Open the audit log and the journal; restore alarm and presence state from it."""
        self._open_audit()
        os.makedirs(os.path.dirname(os.path.abspath(self.config.journal.path)), exist_ok=True)
        self.journal.open()
        active = self.journal.active_events()
        self.alarms.restore([e for e in active if e.code != "offline"])
        states = self.journal.device_states()
        known = {d.id for d in self.registry}
        # Devices removed from the config keep their rows in the journal; they are not
        # watched. Auto-provisioned devices are not in the config either, but they are
        # watched: their offline fault must clear when they return, and one that never
        # returns must go offline.
        known |= {k for k in states if k not in known and self.registry.may_have_provisioned(k)}
        self.presence.restore(
            {k: v for k, v in states.items() if k in known},
            [e for e in active if e.code == "offline" and e.device in known],
        )
        self.presence.track(d.id for d in self.registry)
        _log.info("journal {path} open at seq {seq}; {n} active alarms/faults restored",
                  path=self.config.journal.path, seq=self.journal.last_seq(), n=len(active))

    def _open_audit(self) -> None:
        a = self.audit_settings
        key, created = load_or_create(a.key_file)
        mode = os.stat(a.key_file).st_mode & 0o777
        if mode & 0o077:
            _log.warn("audit key {key} is readable or writable by others (mode {mode:o}): "
                      "anyone who reads it can sign a forged audit log; chmod 600 it",
                      key=a.key_file, mode=mode)
        self.audit.set_key(key)
        self.audit.open()
        _log.info("audit log {path} open at seq {seq}; checkpoints signed by {fp} ({how} "
                  "{key}; public key {pub})", path=a.path, seq=self.audit.last_seq,
                  fp=self.audit.fingerprint, how="new key" if created else "key",
                  key=a.key_file, pub=public_path(a.key_file))
        config_file = os.path.abspath(self.config.file)
        previous = self.audit.last_config()
        self.audit.record_now(_process_user(), "config.loaded", config_file, {
            "path": config_file, "sha256": self.config.sha256 or None,
            # a change of configuration shows as a sha256 unlike the previous start's
            "previous_sha256": previous,
        })

    def close(self) -> None:
        self.alarms.stop()
        self.presence.stop()
        self.journal.close()
        self.audit.close()

    # ------------------------------------------------------------------ the data path

    def resolve(self, transport: str, address_key: Any,
                identity: str | None = None) -> Device | None:
        """The device a transport is talking to, or ``None`` (refused and counted)."""
        device = self.registry.resolve(transport, address_key, identity)
        if device is not None and device.provisioned and self.presence.is_online(device.id) is None:
            self.presence.track([device.id])
        return device

    def ingest(self, device: str, records: Sequence[Record],
               received_at: float | None = None) -> defer.Deferred:
        """Take a device model's records for ``device``.

        Returns a Deferred that fires (with the last journal sequence) once the records and
        the events they caused are committed. A transport acknowledges upstream only then.
        """
        return self.ingest_many(((device, records),), received_at)

    def ingest_many(self, batch: Sequence[tuple[str, Sequence[Record]]],
                    received_at: float | None = None) -> defer.Deferred:
        """:meth:`ingest` for the messages of several devices received at once (a transport
        draining a socket buffer): one journal append and one Deferred for all of them, so
        the per-message cost is the records' own, not a Deferred's and a batch's."""
        now = self.clock.seconds() if received_at is None else received_at
        seen, touch, canonical, process = (self.presence.seen, self.journal.touch,
                                           self._canonical, self.alarms.process)
        out: list[Record] = []
        events: list[Record] = []
        # readings in ReadingBlocks, and the blocks (out holds a block, not its readings)
        blocks = n_blocks = 0
        for device, records in batch:
            events += seen(device, now)
            touch(device, now)
            if type(records) is ReadingBlock:
                rules = self._block_fits(device, records)
                if rules is not None:
                    # the compact path: the same checks, alarms and rows as below, once per
                    # message instead of once per reading (see hub.blocks)
                    blocks += len(records.values)
                    n_blocks += 1
                    if rules and (self._thresholds(device) or self.alarms.watching(device)):
                        events += process(records.readings(_RULE_QUANTITIES))
                    out.append(records)
                    continue
                records = list(records)  # Readings, checked one by one below
            records = canonical(device, records)
            events += process(records)
            out += [r for r in records if type(r) is Reading]
        self.metrics.inc("ingest.readings", len(out) - n_blocks + blocks)
        out += events
        d = self.journal.append(out)
        if events:
            d.addCallbacks(self._after_commit, self._events_not_journaled,
                           callbackArgs=(events,), errbackArgs=(events, 0, True))
        return d

    def _block_fits(self, device: str, block: ReadingBlock) -> bool | None:
        """Whether ``block`` passes :meth:`_canonical` as a whole (its keys, checked once
        per :class:`BlockKeys`, its time, its values with one sum): ``None`` if not (its
        readings then go the general way, which drops and logs the bad ones), else
        whether any of its quantities has an alarm rule."""
        if block.device != device or not (TS_MIN <= block.ts < TS_MAX):
            return None
        keys = block.keys
        rules = self._block_keys.get(keys)
        if rules is None:
            ok = self._valid_keys
            for quantity, channel in keys.pairs:
                if (quantity, channel) not in ok:
                    try:
                        Reading(device, quantity, 0.0, block.ts, channel).validate()
                    except SchemaError:
                        return None
                    ok.add((quantity, channel))
            rules = not keys.quantities.isdisjoint(_RULE_QUANTITIES)
            if len(self._block_keys) < 4096:  # models keep a few key sets each
                self._block_keys[keys] = rules
        if block.plain:  # its maker checked the values (hub.blocks)
            return rules
        try:
            total = sum(block.values)
        except TypeError:
            return None
        if total - total != 0.0:  # a NaN or an infinite value (or a sum past the floats)
            return None
        return rules

    def _canonical(self, device: str, records: Sequence[Record]) -> Sequence[Record]:
        """The records that fit the canonical schema. A model bug (an unknown quantity, a
        malformed channel, a NaN) must not reach the journal and every sink; such records
        are counted and logged with the device, and the rest go on."""
        ok = self._valid_keys
        bad = None
        for r in records:
            if type(r) is Reading:
                if (r.quantity, r.channel) in ok and r.value - r.value == 0 and (
                        TS_MIN <= r.ts < TS_MAX):
                    continue  # the hot path: a known key, a finite value, a sane time
                try:
                    r.validate()
                    ok.add((r.quantity, r.channel))
                    continue
                except SchemaError as e:
                    error = e
            else:
                try:
                    r.validate()
                    continue
                except SchemaError as e:
                    error = e
            bad = bad or []
            bad.append((r, error))
        if not bad:
            return records
        dropped = {id(r) for r, _ in bad}
        for _, e in bad:
            self.metrics.inc("ingest.schema_errors", model=self._model_name(device))
            _log.warn("dropped a non-canonical record from {device} (model {model}): {error}",
                      device=device, model=self._model_name(device), error=e)
        return [r for r in records if id(r) not in dropped]

    def _model_name(self, device: str) -> str:
        d = self._device_or_none(device)
        return d.model_name if d is not None else "?"

    def heartbeat(self, device: str, ts: float | None = None) -> None:
        """A sign of life that carries no data (a DTU heartbeat, an LwM2M update)."""
        now = self.clock.seconds() if ts is None else ts
        self.journal.touch(device, now)
        events = self.presence.seen(device, now)
        if events:
            self.record_events(events)

    def record_events(self, events: Iterable[Event]) -> defer.Deferred:
        """Journal events decided outside :meth:`ingest` (timers, the journal's own faults)
        and tell observers after the commit."""
        return self._journal_events(list(events), 0)

    def _journal_events(self, events: list[Event], attempt: int) -> defer.Deferred:
        d = self.journal.append(events)
        d.addCallbacks(self._after_commit, self._events_not_journaled,
                       callbackArgs=(events,), errbackArgs=(events, attempt, False))
        return d

    def _events_not_journaled(self, failure: Any, events: list[Event], attempt: int,
                              propagate: bool) -> Any:
        """A commit that held events failed (disk full, I/O error). The alarm engine and
        presence already count those edges as made and will not make them again, so the
        events are appended again later, with a growing delay, until the journal takes them.
        (Readings are the transports' to resend: their upstream was not acknowledged.)"""
        self.metrics.inc("journal.event_retries")
        delay = min(60.0, 2.0 ** attempt)
        _log.failure("could not journal {n} events; trying again in {delay:g} s", failure,
                     n=len(events), delay=delay)
        self.clock.callLater(delay, self._journal_events, events, attempt + 1)
        return failure if propagate else None

    def _after_commit(self, seq: int, events: list[Event]) -> int:
        notify = self.plugins.notify
        for e in events:
            notify("hub_event_recorded", hub=self, event=e)
            if e.code == "offline" and e.kind is EventKind.FAULT:
                if e.state is EventState.RAISED:
                    _log.warn("device {device} offline", device=e.device)
                    notify("hub_device_offline", hub=self, device=e.device, ts=e.ts,
                           last_seen=e.value)
                elif e.state is EventState.CLEARED:
                    _log.info("device {device} online", device=e.device)
                    notify("hub_device_online", hub=self, device=e.device, ts=e.ts)
            elif e.state is EventState.RAISED:
                _log.warn("{kind} {code} raised on {device} {channel}: {message}",
                          kind=e.kind.value, code=e.code, device=e.device, channel=e.channel,
                          message=e.message)
            elif e.state is EventState.CLEARED:
                _log.info("{kind} {code} cleared on {device} {channel} after {duration:.0f} s",
                          kind=e.kind.value, code=e.code, device=e.device, channel=e.channel,
                          duration=e.duration or 0.0)
        return seq
