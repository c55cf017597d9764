"""Campaigns running in the hub: each device's :class:`~hub.ota.machine.DeviceUpdate`
driven through its transport's firmware driver, waves started and paused, every phase
change written to the platform store and the journal.

The transport's driver (``plugins/transports/coap_lwm2m/ota.py``) is found as the ``ota``
attribute of the device's command target; it publishes the image at a CoAP URI, performs
the machine's steps in the device's windows and passes /5/0/3 and /5/0/5 reports back.

After a restart of the hub a running campaign picks up where its devices were: a device
whose update had not reached the Execute starts again with the version check (which also
catches one that finished meanwhile); one whose Execute was sent is only verified, never
flashed again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet import defer, threads
from twisted.logger import Logger

from hub.model import Event, EventKind, EventState, Level, event_id
from hub.ota.campaign import FAILURES, plan_waves, verdict
from hub.ota.images import Checked, ImageStore, Upload
from hub.ota.machine import FINAL, DeviceUpdate, Limits, Phase, Step
from hub.ota.settings import OtaSettings
from hub.ota.version import VersionError, parse, same
from hub.store.firmware import Campaign, Firmware

_log = Logger(namespace="hub.ota")

FLUSH_DELAY = 0.2  # s phase changes wait to be written together
DRIVER_WAIT = 5.0  # s between looks for a transport that has not started yet
DRIVER_LOOKS = 12


class CampaignError(ValueError):
    """A campaign request that cannot be carried out; ``status`` for the API."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class FirmwareDriver(Protocol):
    """What a transport offers for firmware updates (``target.ota``)."""

    def publish(self, sha256: str, image: bytes) -> str: ...

    def attach(self, device: str, update: DeviceUpdate) -> None: ...

    def perform(self, device: str, update: DeviceUpdate, step: Step) -> None: ...

    def detach(self, device: str) -> None: ...


@dataclass
class _Run:
    campaign: Campaign
    firmware: Firmware
    waves: list[list[str]]
    phases: dict[str, str]
    flashed: dict[str, bool] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    updates: dict[str, DeviceUpdate] = field(default_factory=dict)
    looking: set[str] = field(default_factory=set)  # started, waiting for their driver


class OtaManager:
    """The campaigns of one hub; every method runs on the reactor."""

    def __init__(self, hub: Any, store: Any, settings: OtaSettings, state_dir: str,
                 write: Callable[..., defer.Deferred] | None = None) -> None:
        self.hub = hub
        self.store = store
        self.settings = settings
        self.limits: Limits = settings.limits
        self.images = ImageStore(os.path.join(state_dir, "firmware"), settings.max_image,
                                 settings.vendor_keys, settings.require_signature)
        self._write = write or threads.deferToThread
        self._runs: dict[int, _Run] = {}
        self._pending: list[dict[str, Any]] = []
        self._flush_call: Any = None
        self._flushing: defer.Deferred | None = None
        self._published: dict[tuple[int, str], str] = {}  # (driver id, sha256) -> URI
        self.running = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Take up the campaigns the store holds as running (or paused: their started
        devices go on)."""
        self.running = True
        for c in self.store.campaigns(states=("running", "paused")):
            fw = self.store.firmware(c.firmware_id)
            if fw is None:
                continue
            rows = self.store.campaign_devices(c.id)
            waves: list[list[str]] = [[] for _ in range(max((r.wave for r in rows), default=-1)
                                                         + 1)]
            for r in rows:
                waves[r.wave].append(r.device)
            run = _Run(c, fw, waves, {r.device: r.phase for r in rows},
                       {r.device: r.flashed for r in rows}, {r.device: r.attempt for r in rows})
            self._runs[c.id] = run
            for r in rows:
                if r.wave <= c.wave and r.phase not in FINAL and r.phase != "queued":
                    self._start_device(run, r.device)
            if c.state == "running":
                self._admit(run)
            _log.info("OTA campaign {id} ({name}) taken up: {n} devices on their way",
                      id=c.id, name=c.name, n=len(run.updates))
            self._evaluate(run)

    def stop(self) -> defer.Deferred:
        """Stop driving (the store keeps where each device was)."""
        self.running = False
        for run in self._runs.values():
            for device, update in list(run.updates.items()):
                update._cancel_timers()
                driver = self._driver(device)
                if driver is not None:
                    driver.detach(device)
            run.updates.clear()
        self._runs.clear()
        return self.flush()

    # -- firmware --------------------------------------------------------------------------

    def add_firmware(self, project: str, models: Iterable[str], version: str, scheme: str,
                     delivery: str, image: bytes, signature: str | None, notes: str,
                     by: str) -> Firmware:
        """Check and keep an image (raises :class:`hub.ota.images.ImageError`,
        :class:`hub.ota.version.VersionError`); runs in a worker thread."""
        parse(version, scheme)
        checked = self.images.check(image, signature)
        self.images.save(image, checked.sha256)
        return self.store.firmware_add(project, models, version, scheme, delivery,
                                       checked.size, checked.sha256, checked.signed, notes, by,
                                       self.hub.clock.seconds())

    def keep_upload(self, project: str, models: Iterable[str], version: str, scheme: str,
                    delivery: str, upload: Upload, checked: Checked, notes: str,
                    by: str) -> Firmware:
        """Keep a streamed, checked image (:meth:`ImageStore.upload`); runs in a worker
        thread. A refused row (the version exists) leaves no file behind that no row
        names."""
        new = upload.keep(checked.sha256)
        try:
            return self.store.firmware_add(project, models, version, scheme, delivery,
                                           checked.size, checked.sha256, checked.signed, notes,
                                           by, self.hub.clock.seconds())
        except BaseException:
            if new and not self.store.firmware_uses(checked.sha256):
                self.images.remove(checked.sha256)
            raise

    def delete_firmware(self, fw: Firmware) -> None:
        self.store.firmware_delete(fw.id)
        if not self.store.firmware_uses(fw.sha256):
            self.images.remove(fw.sha256)

    # -- campaigns -------------------------------------------------------------------------

    def select(self, project: str, fw: Firmware, models: list[str] | None,
               from_versions: list[str] | None, devices: list[str] | None) -> list[tuple[str,
                                                                                   str | None]]:
        """The devices a campaign of ``fw`` in ``project`` would take: of a model the image
        fits, at a selected version (compared exactly), not at the target already and not in
        another campaign that runs."""
        versions = self.store.device_versions()
        busy = {d for run in self._runs.values() if run.campaign.state in ("running", "paused")
                for d, ph in run.phases.items() if ph not in FINAL}
        wanted = set(devices) if devices else None
        out = []
        for d in self.hub.registry:
            if d.project != project or d.model_name not in fw.models:
                continue
            if models and d.model_name not in models:
                continue
            if wanted is not None and d.id not in wanted:
                continue
            v = versions.get(d.id)
            if from_versions and not any(same(v, f, fw.scheme) for f in from_versions):
                continue
            if same(v, fw.version, fw.scheme) or d.id in busy:
                continue
            out.append((d.id, v))
        return sorted(out)

    def create(self, project: str, fw: Firmware, name: str, *, models: list[str] | None = None,
               from_versions: list[str] | None = None, devices: list[str] | None = None,
               canary: int = 1, batch: int = 50, failure_bound: float = 0.1,
               delivery: str | None = None, by: str = "") -> Campaign:
        for v in from_versions or ():
            try:
                parse(v, fw.scheme)
            except VersionError as e:
                raise CampaignError(f"from_versions: {e}", 422) from None
        chosen = self.select(project, fw, models, from_versions, devices)
        if not chosen:
            raise CampaignError("no device matches (project, models the image fits, "
                                "from_versions; devices at the target version or in another "
                                "running campaign are left out)", 422)
        waves = plan_waves([d for d, _ in chosen], canary, batch)
        wave_of = {d: i for i, w in enumerate(waves) for d in w}
        before = dict(chosen)
        selection = {"models": models, "from_versions": from_versions, "devices": devices}
        c = self.store.campaign_add(project, fw.id, name, delivery or fw.delivery, canary,
                                    batch, failure_bound, selection, _limits_dict(self.limits),
                                    [(d, wave_of[d], before[d]) for d, _ in chosen], by,
                                    self.hub.clock.seconds())
        run = _Run(c, fw, waves, {d: "queued" for d, _ in chosen})
        self._runs[c.id] = run
        _log.info("OTA campaign {id} ({name}): {fw} {version} to {n} devices of {project} in "
                  "{w} waves", id=c.id, name=name, fw=fw.id, version=fw.version, n=len(chosen),
                  project=project, w=len(waves))
        self._start_wave(run, 0)
        return run.campaign

    def pause(self, campaign_id: int, reason: str = "paused by hand") -> Campaign:
        run = self._run(campaign_id, ("running",))
        return self._set(run, state="paused", reason=reason)

    def resume(self, campaign_id: int) -> Campaign:
        """Go on; the wave that was paused no longer counts against the bound."""
        run = self._run(campaign_id, ("paused",))
        self._set(run, state="running", reason="", accepted_wave=run.campaign.wave)
        self._admit(run)
        self._evaluate(run)
        return run.campaign

    def cancel(self, campaign_id: int, reason: str = "cancelled by hand") -> Campaign:
        run = self._run(campaign_id, ("running", "paused"))
        self._set(run, state="cancelled", reason=reason)
        for update in list(run.updates.values()):
            update.cancel(reason)
        now = self.hub.clock.seconds()
        for device, phase in list(run.phases.items()):
            if phase == "queued":
                run.phases[device] = "cancelled"
                self._queue_change(run, device, "cancelled", 0, None, reason, False, now)
        self._finished(run)
        return run.campaign

    def progress(self, campaign_id: int) -> dict[str, int]:
        run = self._runs.get(campaign_id)
        if run is None:
            return self.store.campaign_progress(campaign_id)
        out: dict[str, int] = {}
        for ph in run.phases.values():
            out[ph] = out.get(ph, 0) + 1
        return out

    # -- waves -----------------------------------------------------------------------------

    def _start_wave(self, run: _Run, wave: int) -> None:
        if wave != run.campaign.wave:
            self._set(run, wave=wave)
        self._admit(run)
        self._evaluate(run)

    def _admit(self, run: _Run) -> None:
        """Start the current wave's queued devices while fewer than ``max_active`` are
        under way: a wave of a thousand started at once has the hub open a thousand
        exchanges and two thousand observations together, competing with the devices'
        notifications (the ingest); the rest of the wave goes in as devices end."""
        c = run.campaign
        if c.state != "running" or not run.waves:
            return
        room = self.settings.max_active - len(run.updates) - len(run.looking)
        for device in run.waves[c.wave]:
            if room <= 0:
                break
            if run.phases.get(device) == "queued" and device not in run.looking:
                self._start_device(run, device)
                room -= 1

    def _start_device(self, run: _Run, device: str, looks: int = 0) -> None:
        if not self.running or run.campaign.state == "cancelled":
            return
        driver = self._driver(device)
        if driver is None:
            if looks < DRIVER_LOOKS and device in self.hub.registry:
                run.looking.add(device)
                self.hub.clock.callLater(DRIVER_WAIT, self._start_device, run, device,
                                         looks + 1)
                return
            run.looking.discard(device)
            self._queue_change(run, device, "failed", run.attempts.get(device, 0), None,
                               "its transport offers no firmware delivery",
                               False, self.hub.clock.seconds())
            run.phases[device] = "failed"
            self._evaluate(run)
            return
        run.looking.discard(device)
        fw = run.firmware
        uri = ""
        if run.campaign.delivery == "pull":
            key = (id(driver), fw.sha256)
            uri = self._published.get(key, "")
            if not uri:
                uri = self._published[key] = driver.publish(fw.sha256,
                                                            self.images.load(fw.sha256))
        elif run.campaign.delivery == "push":
            driver.publish(fw.sha256, self.images.load(fw.sha256))
        update = DeviceUpdate(
            device, fw.version, run.campaign.delivery,  # type: ignore[arg-type]
            self.hub.clock, lambda step: driver.perform(device, update, step),
            lambda u, before, detail: self._changed(run, u, before, detail), uri=uri,
            limits=self.limits, scheme=fw.scheme, attempt=run.attempts.get(device, 0))
        update.image_sha256 = fw.sha256  # type: ignore[attr-defined]
        run.updates[device] = update
        driver.attach(device, update)
        if run.flashed.get(device):
            update.flashed = True
            update._verify("after a restart of the hub: the Execute was sent before")
        else:
            update.start()
            self._event(device, "ota_started", Level.INFO,
                        f"固件升级开始 / firmware update to {fw.version} started "
                        f"(campaign {run.campaign.id})")

    def _changed(self, run: _Run, update: DeviceUpdate, before: Phase, detail: str) -> None:
        device, phase = update.device, update.phase
        run.phases[device] = phase.value
        now = self.hub.clock.seconds()
        version = update.version if phase in (Phase.SUCCEEDED,) or (
            phase is Phase.RESETTING and before is Phase.CHECKING) else None
        self._queue_change(run, device, phase.value, update.attempt, update.result_code,
                           detail, update.flashed, now, version)
        if phase not in FINAL:
            return
        run.updates.pop(device, None)
        driver = self._driver(device)
        if driver is not None:
            driver.detach(device)
        if phase is Phase.SUCCEEDED:
            self._event(device, "ota_succeeded", Level.INFO,
                        f"固件升级成功 / firmware {update.target}: {detail}")
        elif phase is not Phase.CANCELLED:
            code = f" (result {update.result_code})" if update.result_code is not None else ""
            self._event(device, f"ota_{phase.value}", Level.WARNING,
                        f"固件升级失败 / firmware update {phase.value}{code}: {detail}")
        self._admit(run)
        self._evaluate(run)

    def _evaluate(self, run: _Run) -> None:
        c = run.campaign
        if c.state not in ("running",) or not run.waves:
            return
        wave = c.wave
        phases = [run.phases.get(d, "queued") for d in run.waves[wave]]
        v = verdict(phases, c.failure_bound, bound_applies=wave > c.accepted_wave)
        if v == "pause":
            failed = sum(1 for p in phases if p in FAILURES)
            reason = (f"wave {wave}: {failed} of {len(phases)} devices failed, above the bound "
                      f"of {c.failure_bound:.0%}")
            self._set(run, state="paused", reason=reason)
            self.hub.audit.record("hub", "ota.campaign.paused", str(c.id),
                                  {"project": c.project, "reason": reason}).addErrback(
                                      lambda f: None)
            _log.warn("OTA campaign {id} paused: {reason}", id=c.id, reason=reason)
        elif v == "next":
            if wave + 1 < len(run.waves):
                self._start_wave(run, wave + 1)
            else:
                self._set(run, state="finished", reason=_summary(run))
                self._finished(run)

    def _finished(self, run: _Run) -> None:
        c = run.campaign
        self.hub.audit.record("hub", f"ota.campaign.{c.state}", str(c.id),
                              {"project": c.project, "progress": self.progress(c.id)}
                              ).addErrback(lambda f: None)
        _log.info("OTA campaign {id} {state}: {summary}", id=c.id, state=c.state,
                  summary=_summary(run))

    # -- bookkeeping -----------------------------------------------------------------------

    def _run(self, campaign_id: int, states: tuple[str, ...]) -> _Run:
        run = self._runs.get(campaign_id)
        if run is None or run.campaign.state not in states:
            state = run.campaign.state if run is not None else "not running"
            raise CampaignError(f"campaign {campaign_id} is {state}; this needs it "
                                f"{' or '.join(states)}")
        return run

    def _set(self, run: _Run, **changes: Any) -> Campaign:
        run.campaign = self.store.campaign_set(run.campaign.id, self.hub.clock.seconds(),
                                               **changes)
        return run.campaign

    def _driver(self, device_id: str) -> FirmwareDriver | None:
        if device_id not in self.hub.registry:
            return None
        device = self.hub.registry.get(device_id)
        target = self.hub.commands.targets.get(device.transport or "")
        return getattr(target, "ota", None)

    def _event(self, device: str, code: str, level: Level, message: str) -> None:
        ts = self.hub.clock.seconds()
        self.hub.record_events([Event(device, EventKind.STATE, code, EventState.NOTICE, ts,
                                      level, id=event_id(device, code, "", level, ts),
                                      message=message)])

    def _queue_change(self, run: _Run, device: str, phase: str, attempt: int,
                      result_code: int | None, detail: str, flashed: bool, ts: float,
                      version: str | None = None) -> None:
        run.flashed[device] = flashed
        run.attempts[device] = attempt
        self._pending.append({"campaign_id": run.campaign.id, "device": device,
                              "phase": phase, "attempt": attempt, "result_code": result_code,
                              "detail": detail, "flashed": flashed, "ts": ts,
                              "version": version})
        if self._flush_call is None:
            self._flush_call = self.hub.clock.callLater(FLUSH_DELAY, self._flush_later)

    def _flush_later(self) -> None:
        self._flush_call = None
        if self._flushing is None:
            self.flush()
        else:  # one write at a time keeps the history in order
            self._flush_call = self.hub.clock.callLater(FLUSH_DELAY, self._flush_later)

    def flush(self) -> defer.Deferred:
        """Write the phase changes waiting; fires when they are stored."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        batch, self._pending = self._pending, []
        if not batch:
            return self._flushing or defer.succeed(None)
        previous = self._flushing or defer.succeed(None)
        d = defer.Deferred()

        def write(_: object) -> defer.Deferred:
            return self._write(self.store.ota_record, batch)

        def done(result: object) -> object:
            if self._flushing is d:
                self._flushing = None
            return result

        previous.addBoth(write).addErrback(
            lambda f: _log.failure("OTA: could not store {n} phase changes", f, n=len(batch))
        ).addBoth(done).chainDeferred(d)
        self._flushing = d
        return d


def _limits_dict(limits: Limits) -> dict[str, Any]:
    return {k: getattr(limits, k) for k in ("check", "reset", "deliver", "download", "update",
                                            "verify", "poll_after", "tries", "attempts")}


def _summary(run: _Run) -> str:
    counts: dict[str, int] = {}
    for ph in run.phases.values():
        counts[ph] = counts.get(ph, 0) + 1
    return ", ".join(f"{n} {ph}" for ph, n in sorted(counts.items()))
