"""One HTTP request through Twisted's Agent, bounded by a timeout.

Every provider sends through :func:`request`; it fires with the status, headers and body
of whatever answer came back (any status) and fails with :class:`TransportError` when none
did (no connection, TLS failure, timeout, a connection cut mid-answer). Deciding what a
status means is the provider's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.error import TimeoutError as _TwistedTimeout
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone, ResponseNeverReceived
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

#: Bodies larger than this are cut (a provider's answer is a few hundred bytes).
MAX_BODY = 64 * 1024


class TransportError(Exception):
    """No usable answer: worth retrying the whole message."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


@implementer(IBodyProducer)
class _BytesProducer:
    """The whole body at once: the default FileBodyProducer schedules its writes on the
    global reactor, which is not necessarily the one the provider was given."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body) if body is not None else UNKNOWN_LENGTH

    def startProducing(self, consumer: Any) -> defer.Deferred:
        consumer.write(self.body)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _Collect(Protocol):
    """The body, up to MAX_BODY bytes (the rest is read and dropped)."""

    def __init__(self, done: defer.Deferred) -> None:
        self.done = done
        self.parts: list[bytes] = []
        self.size = 0

    def dataReceived(self, data: bytes) -> None:
        if self.size < MAX_BODY:
            self.parts.append(data)
        self.size += len(data)

    def connectionLost(self, reason: Any = None) -> None:
        if reason is None or reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.parts)[:MAX_BODY])
        else:
            self.done.errback(reason)


def make_agent(reactor: Any, connect_timeout: float) -> Agent:
    # One connection per request: alarm texts are rare, and a kept-alive connection that the
    # far side closed meanwhile would turn the next alarm into a retry.
    return Agent(reactor, connectTimeout=connect_timeout,
                 pool=HTTPConnectionPool(reactor, persistent=False))


def request(agent: Agent, reactor: Any, method: str, url: str, headers: Mapping[str, str],
            body: bytes | None, timeout: float) -> defer.Deferred:
    """Send one request; fires with :class:`HttpResponse` or fails with
    :class:`TransportError` (whose message never contains headers or body)."""
    hdrs = Headers({k.encode("latin-1"): [v.encode("utf-8")] for k, v in headers.items()})
    producer = _BytesProducer(body) if body is not None else None
    d = agent.request(method.encode("ascii"), url.encode("utf-8"), hdrs, producer)

    def got(response: Any) -> defer.Deferred:
        flat = {k.decode("latin-1").lower(): v[-1].decode("latin-1")
                for k, v in response.headers.getAllRawHeaders()}
        body_d: defer.Deferred = defer.Deferred()
        response.deliverBody(_Collect(body_d))
        return body_d.addCallback(lambda b: HttpResponse(response.code, flat, b))

    d.addCallback(got)
    d.addTimeout(timeout, reactor)

    def failed(f: Any) -> None:
        cancelled = f.check(ResponseNeverReceived) and any(
            r.check(defer.CancelledError) for r in f.value.reasons)
        if cancelled or f.check(defer.CancelledError, _TwistedTimeout):
            raise TransportError(f"no answer within {timeout:g} s")
        raise TransportError(f"{f.type.__name__}: {f.getErrorMessage()}"[:300])

    d.addErrback(failed)
    return d
