"""Run one asynchronous job on a fresh (select) reactor: real sockets, the global reactor
untouched."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.selectreactor import SelectReactor
from twisted.python.failure import Failure


def run(build: Any, timeout: float = 10.0) -> Any:
    """Run ``build(reactor)`` on a fresh reactor until its Deferred fires; return the
    result or raise the failure."""
    reactor = SelectReactor()
    out: list[Any] = []

    def go() -> None:
        d = defer.maybeDeferred(build, reactor)
        d.addBoth(out.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.callLater(timeout, reactor.stop)
    reactor.run(installSignalHandlers=False)
    assert out, f"nothing within {timeout} s"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]
