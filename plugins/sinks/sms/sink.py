"""The ``sms`` sink service: journal → routes → storm control → provider, nothing lost.

* Reads events and acknowledgements from its journal cursor (the sink's name). Each event
  becomes one item per phone of the groups its routes notify; an item waits in the phone's
  outbox (:mod:`.storm`) until the phone may be sent to, then goes out alone or in a
  summary.
* The cursor passes an event only once every item it made was accepted by the provider,
  failed permanently, or was suppressed as a duplicate, and the :class:`hub.model.Delivery`
  saying so is committed. A crash in between means sending again: at least once.
* One message in flight per phone. A transient failure (the provider's Deferred fails, a
  timeout, a result neither ok nor permanent) is recorded (``retry``) and the same
  message, with the same key, is sent again after ``retry_initial × 2^n`` s (capped at
  ``retry_max``, jitter ×[0.5, 1)); what arrives for that phone meanwhile waits and goes
  as one summary after it. A permanent failure is recorded (``failed``) and raises the
  fault ``sms_delivery_failed`` for that phone, cleared by its next delivered message.
* Escalation (:mod:`.escalation`) from the event's raise time; an acknowledgement in the
  journal (``hub events ack``) stops it; a recovery also goes to the groups it reached.
* After a restart the sink reads its own recent deliveries back: items already delivered
  are not sent again, rate limits count the messages sent before the restart, and what each
  phone was told within ``dedup_window`` still suppresses the same alarm raised again.

Metrics (label ``sink``): ``sms.sent``, ``sms.summaries``, ``sms.retries``, ``sms.failed``,
``sms.suppressed``, ``sms.alarm_latency_seconds`` (event time to the provider's accept, the
latest alarm), ``sms.alarm_latency_ms`` (the same for every alarm texted, as a histogram in
the manner of ``dtu.round_trip_ms``: label ``le``, counts per bucket, not cumulative),
``sms.alarm_latency_p50_ms`` and ``sms.alarm_latency_p99_ms`` (the upper bound of the bucket
holding that quantile since the start; the longest seen beyond the last bucket),
``sink.lag_records``.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from hub.contracts import SendResult, SmsMessage, SmsProvider
from hub.metrics import Histogram
from hub.model import (
    Acknowledgement,
    Delivery,
    DeliveryStatus,
    Event,
    EventKind,
    EventState,
    Level,
    event_id,
)
from hub.sinks import CursorSink
from plugins.sinks.sms.escalation import Escalations, Step
from plugins.sinks.sms.options import SmsOptions
from plugins.sinks.sms.routing import Router, message_kind
from plugins.sinks.sms.storm import Item, Release, StormControl
from plugins.sinks.sms.templates import DeviceInfo, Renderer

_log = Logger(namespace="hub.sinks.sms")

#: events read ahead of the cursor at most (an outage must not fill memory)
MAX_PENDING = 20000
#: events read back at a restart to restore what phones were told (see _restore_told)
RESTORE_EVENTS = 50_000
#: told events older than those looked up one by one at most (each lookup scans)
RESTORE_LOOKUPS = 50
FAULT_CODE = "sms_delivery_failed"
#: Upper bounds (ms) of the ``sms.alarm_latency_ms`` buckets: from a loopback provider's
#: tens of milliseconds to storm holds, rate limits and retries of many minutes.
LATENCY_BUCKETS_MS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000,
                      120_000, 300_000, 600_000, 1_800_000, 3_600_000)
_FAULT_MESSAGE = re.compile(r"^sms (?P<sink>\S+) → (?P<phone>\+\d+): ")


@dataclass(frozen=True)
class Payload:
    seq: int | None  # journal seq the item holds the cursor at (None: an escalation)
    kind: str
    event: Event
    fields: dict[str, str]


@dataclass
class Outgoing:
    phone: str
    items: tuple[Item, ...]
    message: SmsMessage
    attempts: int = 0


class SmsSink(CursorSink):
    """Built on :class:`hub.sinks.CursorSink` (cursor, wake-ups on the journal's commits, an
    acknowledgement included, backoff, lag, the supervisor).

    ``provider`` and ``rng`` are injectable for tests; by default the provider is built
    from ``options.provider_type`` through the plugin registry."""

    def __init__(self, hub: Any, name: str, options: SmsOptions, *,
                 provider: SmsProvider | None = None,
                 rng: random.Random | None = None) -> None:
        super().__init__(hub, name, options, rng=rng)
        self.tail = self.add_tail(name, {"event", "acknowledgement"})
        if provider is None:
            ptype = self.port.sms_providers[options.provider_type]
            provider = ptype.factory(options.provider, self.clock)
        self.provider = provider
        # a provider may state its own length rules (a signature it prepends, fewer parts)
        max_parts = min(options.max_parts, getattr(provider, "max_parts", None) or 99)
        reserved = int(getattr(provider, "reserved_chars", 0) or 0)
        self.renderer = Renderer(options.templates, options.tz, max_parts, reserved)
        self.router = Router(options.routes, options.recipients)
        self.storm = StormControl(options.storm)
        self.escalations = Escalations()
        self.labels = {"sink": name}
        self.watched: dict[str, Event] = {}  # raised events that may escalate
        self.acked: set[str] = set()
        self.pending: dict[int, int] = {}  # seq -> items not yet settled
        self.done: set[tuple[str, str]] = set()  # (item key, phone) settled before a restart
        self.inflight: dict[str, Outgoing] = {}
        self.retrying: dict[str, tuple[Outgoing, IDelayedCall]] = {}
        self.phone_failures: dict[str, int] = {}
        self.faults: dict[str, Event] = {}  # phone -> raised sms_delivery_failed
        self.latency = Histogram(self.port.metrics, "sms.alarm_latency_ms", LATENCY_BUCKETS_MS,
                                 {0.5: "sms.alarm_latency_p50_ms",
                                  0.99: "sms.alarm_latency_p99_ms"}, **self.labels)
        self._timer: IDelayedCall | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def started(self) -> None:
        self._restore()

    def stopped(self) -> None:
        for call in [self._timer, *(c for _, c in self.retrying.values())]:
            if call is not None and call.active():
                call.cancel()
        self.retrying.clear()

    def reset(self) -> None:
        """After an unexpected failure: start over as after a restart (what was delivered
        is read back from the journal, so nothing delivered goes twice)."""
        self.storm = StormControl(self.options.storm)
        self.escalations = Escalations()
        self.watched.clear()
        self.pending.clear()
        self.done.clear()
        self._restore()

    def _restore(self) -> None:
        j, now = self.port.journal, self.clock.seconds()
        s = self.options.storm
        ladders = [r.escalate_after * len(r.escalate) for r in self.router.routes]
        lookback = max([s.summary_window, s.dedup_window, *ladders,
                        *(per for _, per in s.rate_limits)])
        sent = []
        for _, d in j.deliveries(now - lookback, sink=self.sink):
            if d.status is not DeliveryStatus.RETRY:
                self.done.update((k, d.target) for k in d.items)
            if d.status is DeliveryStatus.SENT:
                self.storm.note_sent(d.target, d.ts)
                sent.append(d)
        active = j.active_events()
        self._restore_told(sent, active, now)
        ids = {e.id for e in active}
        self.acked = {a.event_id for a in j.acknowledgements() if a.event_id in ids}
        for e in active:
            m = _FAULT_MESSAGE.match(e.message)
            if e.code == FAULT_CODE and m and m["sink"] == self.sink:
                self.faults[m["phone"]] = e
            self._watch(e)

    def _restore_told(self, sent: list[Delivery], active: list[Event], now: float) -> None:
        """Which alarms each phone was told of (raised or recovered) within dedup_window,
        from the sent deliveries, in order: without it, an alarm that flaps just after a
        restart is texted again although the phone was told of it a minute before. The
        deliveries name events by id; device, code and channel come from the journal's
        events (the window's in one query, any older ones one by one, a few at most; an
        event not found is not deduplicated: sent again rather than lost)."""
        w = self.options.storm.dedup_window
        told = []
        for d in sent:
            if d.ts <= now - w:
                continue
            for key in d.items:
                event_id, state, step = key.rsplit(":", 2)
                if step == "0" and state in (EventState.RAISED, EventState.CLEARED):
                    told.append((d, event_id, state == EventState.RAISED))
        if not told:
            return
        j = self.port.journal
        events: dict[str, Event | None] = {
            e.id: e for e in j.events(since=now - 2 * w, limit=RESTORE_EVENTS)}
        events.update((e.id, e) for e in active)
        lookups = 0
        for d, event_id, raised in told:
            if event_id not in events and lookups < RESTORE_LOOKUPS:
                lookups += 1
                events[event_id] = j.event(event_id)
            e = events.get(event_id)
            if e is not None:
                self.storm.note_told(d.target, dedup_key(e), raised, d.ts)

    # -- reading the journal -------------------------------------------------------------

    def pump(self) -> None:
        self._fill()
        now = self.clock.seconds()
        for step in self.escalations.due(now):
            self._escalate(step)
        busy = self.inflight.keys() | self.retrying.keys()
        for release in self.storm.release(now, busy):
            self._send(self._compose(release))
        self._schedule()

    def _fill(self) -> None:
        size = self.options.read_ahead
        while len(self.pending) < MAX_PENDING and self.tail.behind() > 0:
            rows, _, full = self.tail.read(size)
            for seq, rec in rows:
                if isinstance(rec, Event):
                    self._event(seq, rec)
                elif isinstance(rec, Acknowledgement):
                    self.acked.add(rec.event_id)
                    self.escalations.ack(rec.event_id)
            if not full:
                break
        self._advance()

    def _advance(self) -> None:
        upto = min(self.pending) - 1 if self.pending else self.tail.position
        self.tail.commit(upto)
        self.port.metrics.set("sink.lag_records", self.port.journal.last_seq() - self.tail.cursor,
                             sink=self.sink)

    def _schedule(self) -> None:
        due = [t for t in (self.storm.next_due(), self.escalations.next_due()) if t is not None]
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if due and self.running:
            delay = max(0.0, min(due) - self.clock.seconds())
            self._timer = self.clock.callLater(delay, self._run)

    # -- events into items ---------------------------------------------------------------

    def info(self, device: str) -> DeviceInfo:
        d = self.port.device(device)
        if d is None:
            return DeviceInfo("监控主机" if device == "hub" else device)
        return DeviceInfo(d.name, d.location, d.project, d.group)

    def _watch(self, e: Event) -> None:
        """Start escalating a raised event of a route with an escalation ladder."""
        kind = message_kind(e)
        if kind is None or kind == "recovery" or e.id in self.acked:
            return
        for i, route in self.router.matching(kind, e, self.info(e.device)):
            if route.escalate:
                self.watched[e.id] = e
                self.escalations.start(e.id, i, route.escalate, route.escalate_after, e.ts)

    def _event(self, seq: int, e: Event) -> None:
        kind = message_kind(e)
        if kind is None or not e.id:
            return
        info = self.info(e.device)
        routes = self.router.matching(kind, e, info)
        groups = [g for _, r in routes for g in r.notify]
        if kind == "recovery":
            reached = self.escalations.stop(e.id)
            self.watched.pop(e.id, None)
            self.acked.discard(e.id)
            if routes:
                groups += reached
        else:
            self._watch(e)
        fields = self.renderer.fields(e, kind, info)
        for phone in self.router.phones(groups):
            self._offer(phone, Payload(seq, kind, e, fields), 0, dedup_key(e))

    def _escalate(self, step: Step) -> None:
        e = self.watched.get(step.event_id)
        if e is None:
            return
        kind = message_kind(e) or "alarm"
        fields = self.renderer.fields(e, kind, self.info(e.device), step.level, step.overdue)
        for phone in self.router.phones([step.group]):
            self._offer(phone, Payload(None, kind, e, fields), step.level, "")

    def _offer(self, phone: str, p: Payload, step: int, dedup: str) -> None:
        key = f"{p.event.id}:{p.event.state.value}:{step}"
        if (key, phone) in self.done:
            return
        item = Item(key, dedup, p.kind != "recovery", p)
        if not self.storm.offer(phone, item, self.clock.seconds()):
            self.port.metrics.inc("sms.suppressed", **self.labels)
            self._record(phone, (item,), DeliveryStatus.SUPPRESSED, "",
                         "the same alarm was sent within dedup_window")
            return
        if p.seq is not None:
            self.pending[p.seq] = self.pending.get(p.seq, 0) + 1

    # -- sending -------------------------------------------------------------------------

    def _compose(self, release: Release) -> Outgoing:
        items = release.items
        r = self.renderer
        if len(items) == 1:
            p: Payload = items[0].payload
            text, template, params = r.text(p.kind, p.fields), p.kind, p.fields
            key = f"{self.sink}/{release.phone}/{items[0].key}"
        else:
            entries = [(i.payload.kind, r.line(i.payload.kind, i.payload.fields)) for i in items]
            params = r.summary(entries, self.clock.seconds())
            text, template = r.text("summary", params), "summary"
            digest = hashlib.blake2b("|".join(i.key for i in items).encode(), digest_size=6)
            key = f"{self.sink}/{release.phone}/summary/{digest.hexdigest()}"
        message = SmsMessage((release.phone,), text, template, dict(params), key)
        return Outgoing(release.phone, items, message)

    def _send(self, out: Outgoing) -> None:
        self.inflight[out.phone] = out
        out.attempts += 1
        # a provider that queues (a GSM modem sends one text at a time) says how long it
        # may take; timing out sooner would only send the same text twice
        timeout = max(self.options.send_timeout,
                      float(getattr(self.provider, "send_deadline", 0) or 0))
        d = defer.maybeDeferred(self.provider.send, out.message)
        d.addTimeout(timeout, self.clock)
        d.addCallbacks(self._answered, self._failed, callbackArgs=(out,), errbackArgs=(out,))
        d.addErrback(self.internal_error)  # a bug after the answer: the supervisor's

    def _answered(self, results: Any, out: Outgoing) -> None:
        results = list(results or ())
        r: SendResult | None = next((x for x in results if x.phone == out.phone),
                                    results[0] if len(results) == 1 else None)
        if r is None:
            self._failed(None, out, "the provider gave no result for this phone")
        elif r.ok:
            self._settle(out, DeliveryStatus.SENT, r.message_id, "")
        elif r.permanent:
            self._settle(out, DeliveryStatus.FAILED, r.message_id, r.error)
        else:
            self._failed(None, out, r.error or "transient failure")

    def _failed(self, failure: Any, out: Outgoing, error: str = "") -> None:
        if self.inflight.get(out.phone) is out:
            del self.inflight[out.phone]
        if not self.running:
            return
        error = error or (failure.getErrorMessage() if failure is not None else "?")
        n = self.phone_failures[out.phone] = self.phone_failures.get(out.phone, 0) + 1
        delay = self.backoff.delay(n)
        self.port.metrics.inc("sms.retries", **self.labels)
        _log.warn("sink {sink}: sending to {phone} failed ({error}); again in {delay:.1f} s",
                  sink=self.sink, phone=_mask(out.phone), error=error, delay=delay)
        self._record(out.phone, out.items, DeliveryStatus.RETRY, "",
                     f"attempt {out.attempts}: {error}", out.message.key)
        self.retrying[out.phone] = (out, self.clock.callLater(delay, self._resend, out.phone))

    def _resend(self, phone: str) -> None:
        out, _ = self.retrying.pop(phone)
        if self.running:
            self._send(out)

    def _settle(self, out: Outgoing, status: DeliveryStatus, message_id: str,
                error: str) -> None:
        """Accepted or refused for good: record it, then (after the commit) let the cursor
        pass the events of the message."""
        if self.inflight.get(out.phone) is out:
            del self.inflight[out.phone]
        if not self.running:
            return  # not recorded: sent again after the restart (at least once)
        now = self.clock.seconds()
        self.phone_failures.pop(out.phone, None)
        self.delivered(1)
        if status is DeliveryStatus.SENT:
            self.port.metrics.inc("sms.sent", **self.labels)
            if len(out.items) > 1:
                self.port.metrics.inc("sms.summaries", **self.labels)
            alarms = [i.payload.event.ts for i in out.items if i.payload.kind == "alarm"]
            if alarms:
                self.port.metrics.set("sms.alarm_latency_seconds", now - max(alarms),
                                     **self.labels)
                self._latencies([now - ts for ts in alarms])
            self._fault_cleared(out.phone, now)
        else:
            self.port.metrics.inc("sms.failed", **self.labels)
            _log.error("sink {sink}: {phone} refused for good: {error}", sink=self.sink,
                       phone=_mask(out.phone), error=error)
            self._fault(out.phone, error, now)
        d = self._record(out.phone, out.items, status, message_id, error, out.message.key)
        d.addCallback(lambda _: self._release(out))
        self._run()

    def _latencies(self, seconds: list[float]) -> None:
        for latency in seconds:
            self.latency.observe(latency * 1000)

    def _release(self, out: Outgoing) -> None:
        for item in out.items:
            seq = item.payload.seq
            if seq is None or seq not in self.pending:
                continue
            self.pending[seq] -= 1
            if self.pending[seq] <= 0:
                del self.pending[seq]
        if self.running:
            self._advance()
            self.wake()  # room for more: read on

    def _record(self, phone: str, items: tuple[Item, ...], status: DeliveryStatus,
                message_id: str, detail: str, key: str = "") -> defer.Deferred:
        devices = {i.payload.event.device for i in items}
        rec = Delivery(self.sink, phone, status, self.clock.seconds(),
                       devices.pop() if len(devices) == 1 else "hub",
                       tuple(dict.fromkeys(i.payload.event.id for i in items)),
                       tuple(i.key for i in items), message_id, detail, key)
        d = self.port.journal.append([rec])
        d.addErrback(lambda f: _log.failure("sink {sink}: could not journal a delivery", f,
                                            sink=self.sink))
        return d

    # -- our own fault ---------------------------------------------------------------------

    def _fault(self, phone: str, error: str, now: float) -> None:
        if phone in self.faults:
            return
        e = Event(device="hub", kind=EventKind.FAULT, code=FAULT_CODE,
                  state=EventState.RAISED, ts=now, level=Level.FAULT,
                  id=event_id("hub", f"{FAULT_CODE}/{self.sink}/{phone}", "", Level.FAULT, now),
                  message=f"sms {self.sink} → {phone}: {error}")
        self.faults[phone] = e
        self.port.record_events([e])

    def _fault_cleared(self, phone: str, now: float) -> None:
        e = self.faults.pop(phone, None)
        if e is not None:
            self.port.record_events([replace(e, state=EventState.CLEARED, ts=now, raised_ts=e.ts,
                                            message=f"sms {self.sink} → {phone}: delivered")])


def dedup_key(e: Event) -> str:
    """What makes two events "the same alarm" for storm control's dedup_window."""
    return f"{e.device}/{e.code}/{e.channel}"


def _mask(phone: str) -> str:
    """Phone numbers are personal data: logs keep the first and last digits only."""
    return phone[:5] + "****" + phone[-4:] if len(phone) > 9 else phone
