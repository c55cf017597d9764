"""Where notifications go: SMS through any SMS provider plugin, and a signed webhook.

:class:`Outbox` owns delivery: each notification was claimed in the store first (one row per
alarm, step, channel and recipient: never sent twice), is sent, retried with backoff
(:class:`hub.sinks.Backoff`) while the channel says the failure may mend, and its end
(``sent`` with the provider's answer, or ``failed``) written to the row. Rows still
``pending`` when the hub stopped are its durable cursor: sent again at the next start,
their attempt count carried on (the bound on attempts holds across restarts). Every
attempt is one row of ``notification_attempts`` with the provider's answer, and the time
of the next try is on the notification (``next_ts``). Nothing is sent twice for the same
(alarm, step, channel, recipient): the claim is unique in the store, and a request that
went out but whose answer was lost in a crash is sent again with the same
``Idempotency-Key`` (webhook) or ``OutId``/``SessionContext`` (voice), so a receiver that
deduplicates sees it once.

Hazard reminders use the same outbox: their notifications carry ``hazard_id`` and are
claimed under ``alarm_id = -hazard_id`` with a negative step per reminder kind
(:func:`hub.alarmdesk.inspections.reminder_step`).
A slow or failing channel holds nothing else up: every notification has its own retries,
and the escalator's next step runs on its own timer.

The webhook body is JSON; ``X-Hub-Timestamp`` and ``X-Hub-Signature: sha256=<hex
HMAC-SHA256(secret, "<timestamp>.<body>")>`` let the receiver check it (and refuse
replays), ``Idempotency-Key`` names the (alarm, step, recipient) for receivers that
deduplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from hub.alarmdesk.policy import Notification
from hub.alarmdesk.settings import ChannelSettings, NotifySettings
from hub.contracts.sms import SmsMessage
from hub.sinks import Backoff

_log = Logger(namespace="hub.alarmdesk.channels")


class Permanent(Exception):
    """A failure no retry mends (a number the provider refuses, a 4xx)."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@implementer(IBodyProducer)
class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> defer.Deferred:
        consumer.write(self.body)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def idempotency_key(n: Notification) -> str:
    """The same for every attempt of one (alarm or hazard, step, recipient)."""
    if n.hazard_id is not None:
        return f"hazard-{n.hazard_id}-{n.step}-{n.recipient}"
    return f"alarm-{n.alarm_id}-{n.step}-{n.recipient}"


@implementer(IAgentEndpointFactory)
class _AddressEndpoints:
    """Endpoints for a plain-HTTP URL whose host is an IP address: connected as it is.
    The default (``HostnameEndpoint``) sends even an address through ``getaddrinfo`` on
    the reactor's thread pool, one hop per connection: a storm's thousand requests waited
    their turn there behind whatever else the pool was doing."""

    def __init__(self, reactor: Any, timeout: float) -> None:
        self.reactor = reactor
        self.timeout = timeout

    def endpointForURI(self, uri: Any) -> Any:
        host = uri.host.decode("ascii")
        kind = TCP6ClientEndpoint if isIPv6Address(host) else TCP4ClientEndpoint
        return kind(self.reactor, host, uri.port, timeout=self.timeout)


class _QuietPool(HTTPConnectionPool):
    """Connections whose factory does not log "Starting factory"/"Stopping factory" at
    info level: two log lines (each a write) per request, 2,000 in a storm."""

    class _factory(HTTPConnectionPool._factory):  # type: ignore[name-defined,misc]
        noisy = False


def _agent(url: str, reactor: Any, timeout: float) -> Agent:
    pool = _QuietPool(reactor)
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "http" and (isIPAddress(host) or isIPv6Address(host)):
        return Agent.usingEndpointFactory(reactor, _AddressEndpoints(reactor, timeout),
                                          pool=pool)
    return Agent(reactor, pool=pool, connectTimeout=timeout)


class WebhookChannel:
    def __init__(self, settings: ChannelSettings, reactor: Any) -> None:
        self.settings = settings
        self.reactor = reactor
        self.agent = _agent(settings.url, reactor, settings.timeout)

    def send(self, n: Notification) -> defer.Deferred:
        body = json.dumps({**asdict(n), "summary_of": list(n.summary_of)},
                          ensure_ascii=False).encode()
        ts = str(int(self.reactor.seconds()))
        headers = Headers({
            "Content-Type": ["application/json; charset=utf-8"],
            "X-Hub-Timestamp": [ts],
            "X-Hub-Signature": [sign(self.settings.secret, ts, body)],
            "Idempotency-Key": [idempotency_key(n)],
            "User-Agent": ["hub-alarmdesk"]})
        d = self.agent.request(b"POST", self.settings.url.encode(), headers, _Body(body))
        d.addTimeout(self.settings.timeout, self.reactor)

        def answered(response: Any) -> defer.Deferred:
            def check(text: bytes) -> str:
                answer = f"{response.code} {text[:500].decode('utf-8', 'replace')}"
                if 200 <= response.code < 300:
                    return answer
                if 400 <= response.code < 500 and response.code not in (408, 429):
                    raise Permanent(answer)
                raise RuntimeError(answer)
            return readBody(response).addCallback(check)
        return d.addCallback(answered)


class SmsChannel:
    """One SMS (or voice) provider: template ``alarm``, ``summary`` for a storm's summary,
    ``reminder`` for a hazard reminder when the provider has one configured (else
    ``alarm``, as before there was one). A reminder's parameters add ``hazard`` (its id)
    and ``state`` (``due`` before the deadline, ``overdue`` after)."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        templates = getattr(getattr(provider, "options", None), "templates", None) or {}
        self.has_reminder = "reminder" in templates

    def message(self, n: Notification) -> SmsMessage:
        params = {"text": n.text, "severity": n.severity,
                  "count": str(len(n.summary_of) or 1)}
        if n.hazard_id is not None:
            template = "reminder" if self.has_reminder else "alarm"
            params |= {"hazard": str(n.hazard_id), "state": "due" if n.step == -1
                       else "overdue"}
        else:
            template = "summary" if n.summary_of else "alarm"
        return SmsMessage((n.recipient,), n.text, template, params,
                          f"hazard-{n.hazard_id}{n.step}" if n.hazard_id is not None
                          else f"alarm-{n.alarm_id}-{n.step}")

    def send(self, n: Notification) -> defer.Deferred:
        msg = self.message(n)

        def check(results: list[Any]) -> str:
            r = results[0]
            if r.ok:
                return f"ok {r.message_id}".strip()
            if r.permanent:
                raise Permanent(r.error)
            raise RuntimeError(r.error)
        return defer.maybeDeferred(self.provider.send, msg).addCallback(check)


def build_channels(settings: NotifySettings, plugins: Any, reactor: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, c in settings.channels.items():
        if c.type == "webhook":
            out[name] = WebhookChannel(c, reactor)
        elif c.type == "sms" and c.provider is not None:
            ptype = getattr(plugins, "sms_providers", {}).get(c.provider_type)
            if ptype is not None:
                out[name] = SmsChannel(ptype.factory(c.provider, reactor))
    return out


def push_text(channels: dict[str, Any], channel: str, recipients: Sequence[str], text: str,
              project: str = "", key: str = "") -> list[defer.Deferred]:
    """Something that is not an alarm (a scheduled report's summary and link) through a
    configured channel, once per recipient, sent once without the outbox's claims and
    retries. ``alarm_id`` 0 marks it; ``step`` is a number of ``key`` (the report), so a
    receiver that deduplicates by ``Idempotency-Key`` keeps each report."""
    ch = channels.get(channel)
    if ch is None:
        return [defer.fail(KeyError(f"no notification channel {channel!r} configured"))]
    step = zlib.crc32(key.encode()) if key else 0
    return [defer.maybeDeferred(ch.send, Notification(0, step, channel, r, "info", text,
                                                      project)) for r in recipients]


class Outbox:
    def __init__(self, clock: Any, store: Any, channels: dict[str, Any],
                 settings: NotifySettings, on_done: Callable[[int, str], None] | None = None
                 ) -> None:
        self.clock = clock
        self.store = store
        self.channels = channels
        self.settings = settings
        self.backoff = Backoff(settings.retry_initial, settings.retry_max)
        self.on_done = on_done
        self.calls: set[Any] = set()
        self._rows: dict[tuple, int] = {}  # claimed, not yet handed to deliver
        self._answers: dict[int, list[str]] = {}  # row -> each attempt's answer so far
        # attempts answered and not yet written: written together (one transaction) at the
        # end of the reactor turn, or at once when the answer came within the send
        self._settled: list[tuple[int, str, str, int, float, str, str, float | None]] = []
        self._done: list[tuple[int, str]] = []
        self._write_call: Any = None

    def claim(self, notes: list[Notification], ts: float) -> list[bool]:
        rows = self.store.notify_claim(
            [(n.alarm_id, n.step, n.channel, n.recipient,
              {**asdict(n), "summary_of": list(n.summary_of)}) for n in notes], ts)
        for n, row in zip(notes, rows, strict=True):
            if row is not None:
                self._rows[(n.alarm_id, n.step, n.channel, n.recipient)] = row
        return [row is not None for row in rows]

    def deliver(self, n: Notification) -> None:
        row = self._rows.pop((n.alarm_id, n.step, n.channel, n.recipient), None)
        if row is not None:
            self._attempt(row, n, 1)

    def resume(self) -> None:
        """Send what was claimed and not finished before the last stop (after giving the
        providers that keep per-number limits their calls of the last window, from the
        attempt log)."""
        self.restore_limits()
        made = self.store.notify_retry_state()
        for row, _channel, body in self.store.notify_pending():
            body["summary_of"] = tuple(body.get("summary_of") or ())
            attempts = made.get(row, (0, None))[0]
            if attempts:
                self._answers[row] = [f"#{a['attempt']} {a['answer']}"
                                      for a in self.store.notify_attempts(row)]
            self._attempt(row, Notification(**body), attempts + 1)

    def restore_limits(self) -> None:
        """A voice provider's per-number windows (:mod:`plugins.sinks.sms_cloud.
        aliyun_voice`) as the attempt log has them: every attempt on the channel in the
        longest window counts as a call, but those refused on our side before any request
        (its ``REFUSED_CODE``). An attempt's time is when its answer came, a little after
        the call was placed, so the windows end a little late rather than early."""
        now = self.clock.seconds()
        for name, channel in self.channels.items():
            provider = getattr(channel, "provider", None)
            restore = getattr(provider, "restore_calls", None)
            limits = getattr(provider, "limits", None)
            if restore is None or limits is None:
                continue
            refused = getattr(provider, "refused_code", "")
            restore(self.store.notify_attempt_times(
                name, now - limits.longest, f"%: {refused}:%" if refused else ""))

    def stop(self) -> None:
        for call in list(self.calls):
            if call.active():
                call.cancel()
        self.calls.clear()
        self._write_settled()

    def _attempt(self, row: int, n: Notification, attempt: int) -> None:
        channel = self.channels.get(n.channel)
        if channel is None:
            self._end(row, "failed", f"no channel {n.channel!r} configured", attempt)
        else:
            d = defer.maybeDeferred(channel.send, n)
            d.addCallbacks(lambda answer: self._end(row, "sent", str(answer), attempt),
                           lambda f: self._failed(row, n, attempt, f))
            d.addErrback(lambda f: _log.failure("notification bookkeeping failed", f))
        if self._settled:  # answered at once: on record when the send returns
            self._write_settled()

    def _settle(self, row: int, status: str, text: str, attempts: int, now: float,
                outcome: str, answer: str, next_ts: float | None) -> None:
        """An attempt's answer for the store: a storm's thousands of answers are written
        in a few transactions, not two each (each a commit the reactor waits for)."""
        self._settled.append((row, status, text, attempts, now, outcome, answer, next_ts))
        if self._write_call is None:
            self._write_call = self.clock.callLater(0, self._write_settled)

    def _write_settled(self) -> None:
        if self._write_call is not None and self._write_call.active():
            self._write_call.cancel()
        self._write_call = None
        settled, self._settled = self._settled, []
        done, self._done = self._done, []
        if not settled:
            return
        try:
            self.store.notify_settle(settled)
        except Exception:
            # still pending in the store: sent again (same key) at the next start if the
            # hub stops first; otherwise written with the next ones
            _log.failure("{n} notification answers not written; again in 1 s",
                         n=len(settled))
            self._settled[:0] = settled
            self._done[:0] = done
            if self._write_call is None:
                self._write_call = self.clock.callLater(1.0, self._write_settled)
            return
        if self.on_done is not None:
            for row, status in done:
                self.on_done(row, status)

    def _failed(self, row: int, n: Notification, attempt: int, failure: Any) -> None:
        error = failure.getErrorMessage() or failure.type.__name__
        if failure.check(Permanent) or attempt >= self.settings.attempts:
            self._end(row, "failed", error, attempt)
            return
        _log.info("notification {row} to {to} failed ({error}); retrying", row=row,
                  to=n.recipient, error=error)
        # every attempt's answer on record, the row still pending (resumed after a stop)
        now = self.clock.seconds()
        delay = self.backoff.delay(attempt)
        self._settle(row, "pending", self._answer(row, attempt, error), attempt, now, "error",
                     error, now + delay)
        call = self.clock.callLater(delay, self._retry, row, n, attempt + 1)
        self.calls.add(call)

    def _retry(self, row: int, n: Notification, attempt: int) -> None:
        self.calls = {c for c in self.calls if c.active()}
        self._attempt(row, n, attempt)

    def _answer(self, row: int, attempt: int, answer: str) -> str:
        answers = self._answers.setdefault(row, [])
        answers.append(f"#{attempt} {answer}")
        return "; ".join(answers)

    def _end(self, row: int, status: str, answer: str, attempts: int) -> None:
        text = self._answer(row, attempts, answer)
        self._answers.pop(row, None)
        self._settle(row, status, text, attempts, self.clock.seconds(), status, answer, None)
        self._done.append((row, status))
