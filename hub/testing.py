"""Helpers for testing device models and plugins without sockets; also a pytest plugin.

Installed with the hub as the pytest plugin ``hub_testing`` (entry point ``pytest11``), so
a vendor's test suite gets the fixtures ``hub_clock`` and ``make_hub`` for free.

Byte vectors, after h11's harness: a stream decoder must give the same frames whether a
vector arrives whole, one byte at a time, or followed by bytes of the next frame (which it
must leave in its buffer)::

    from hub.testing import check_decode, check_stream

    def test_status_frame():
        check_decode(AcmeModel(), "dev-1", bytes.fromhex("01 03 02 00 07 f9 86"),
                     [Reading("dev-1", "temperature", 7.0, 0.0, "T1")])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pytest
from twisted.internet.task import Clock

from hub.model import Event, Reading

NEED_DATA = None  # what a stream decoder's next_frame() returns while a frame is incomplete


def check_decode(model: Any, device: str, payload: bytes, expected: Sequence[Any],
                 received_at: float = 0.0) -> list:
    """Decode one complete payload and compare the records with ``expected`` (in order);
    every Reading is also checked against the canonical schema. Returns the records."""
    records = list(model.decode(device, payload, received_at))
    for r in records:
        if isinstance(r, Reading):
            r.validate()
        elif not isinstance(r, Event):
            raise AssertionError(f"decode returned {r!r}, not a Reading or Event")
    assert records == list(expected), f"decoded {records!r}\nexpected {list(expected)!r}"
    return records


def check_stream(make_decoder: Callable[[], Any], data: bytes, expected: Sequence[Any],
                 trailing: bytes = b"") -> None:
    """Feed ``data`` to fresh decoders three ways and require the same frames each time.

    A stream decoder has ``feed(bytes)``, ``next_frame()`` (a frame, or ``None`` while more
    bytes are needed) and ``buffered`` (bytes received but not yet consumed).
    """

    def drain(dec: Any) -> list:
        out = []
        while (item := dec.next_frame()) is not NEED_DATA:
            out.append(item)
        return out

    whole = make_decoder()
    whole.feed(data)
    got = drain(whole)
    assert got == list(expected), f"whole vector gave {got!r}, expected {list(expected)!r}"

    dec = make_decoder()
    got = []
    for i in range(len(data)):
        dec.feed(data[i:i + 1])
        got += drain(dec)
    assert got == list(expected), f"byte by byte gave {got!r}, expected {list(expected)!r}"

    if trailing:
        dec = make_decoder()
        dec.feed(data + trailing)
        got = drain(dec)
        assert got == list(expected), f"with trailing bytes gave {got!r}"
        assert bytes(dec.buffered) == trailing, (
            f"trailing bytes {trailing.hex(' ')} not left in the buffer "
            f"(buffer holds {bytes(dec.buffered).hex(' ')})")


@contextlib.contextmanager
def registered_plugin(plugins: Any, plugin: object, name: str) -> Iterator[object]:
    """Register ``plugin`` on a :class:`hub.pluginmanager.HubPlugins` for a ``with`` block.

    Only observer and lifecycle hooks take effect this way; types are collected when the
    hub is built (pass them through ``make_hub(extra_plugins=...)`` instead).
    """
    plugins.pm.register(plugin, name=name)
    try:
        yield plugin
    finally:
        plugins.pm.unregister(name=name)


def build_hub(config: dict, state_dir: str, *, clock: Clock | None = None,
              extra_plugins: Sequence[tuple[str, object]] = (), file: str = "test.yaml") -> Any:
    """A :class:`hub.core.Hub` from a config mapping, on a :class:`task.Clock`, with its
    journal under ``state_dir``. The hub is not opened; call ``hub.open()``."""
    from hub.config import check_config
    from hub.core import Hub
    from hub.pluginmanager import make_plugins

    plugins = make_plugins(extra=extra_plugins)
    config = dict(config)
    config.setdefault("hub", {})
    config["hub"] = {**config["hub"], "state_dir": state_dir}
    cfg = check_config(config, file, plugins)
    return Hub(cfg, plugins, clock or Clock())


@pytest.fixture
def hub_clock() -> Clock:
    """A :class:`twisted.internet.task.Clock` starting at a fixed, realistic time."""
    clock = Clock()
    clock.advance(1_767_225_600.0)  # 2026-01-01T00:00:00Z
    return clock


@pytest.fixture
def make_hub(tmp_path, hub_clock) -> Iterator[Callable[..., Any]]:
    """``make_hub(config_dict, extra_plugins=())`` → an opened Hub on ``hub_clock``;
    closed after the test."""
    hubs = []

    def make(config: dict, extra_plugins: Sequence[tuple[str, object]] = ()) -> Any:
        hub = build_hub(config, str(tmp_path / "var"), clock=hub_clock,
                        extra_plugins=extra_plugins)
        hub.open()
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        with contextlib.suppress(Exception):
            hub.close()


# ------------------------------------------------------------------ for sink authors
#
# A sink's promise is "at least once, never past what the far side accepted". The harness
# runs a sink against a real journal in a temporary directory on a task.Clock, with a
# stand-in for the far side that can be taken down, held, and brought back::
#
#     def test_my_sink_redelivers_after_an_outage(sink_harness):
#         far = sink_harness.far_side()
#         sink = sink_harness.start(MySink(sink_harness.port, "mine", options, send=far))
#         far.down()
#         sink_harness.feed([Reading("efd-1", "temperature", 21.5, 0.0)] * 10)
#         sink_harness.run(30)
#         assert sink_harness.cursor("mine") == 0       # nothing accepted, nothing passed
#         far.up()
#         sink_harness.run(60)
#         sink_harness.check_delivered("mine", far)     # every seq, at least once


class FarSide:
    """The system a sink delivers to, played by the test: ``far(payload)`` returns a
    Deferred, answered at once while ``up``, failed with ``error()`` while ``down``, left
    pending while ``held`` (:meth:`answer` settles the oldest). ``attempts`` holds every
    payload offered, ``accepted`` those the far side took."""

    def __init__(self, error: Callable[[], Exception] | None = None) -> None:
        from hub.sinks import Retry

        self.error = error or (lambda: Retry("the far side is down"))
        self.state = "up"
        self.attempts: list[Any] = []
        self.accepted: list[Any] = []
        self.pending: list[tuple[Any, Any]] = []

    def up(self) -> None:
        self.state = "up"

    def down(self) -> None:
        self.state = "down"

    def hold(self) -> None:
        self.state = "held"

    def answer(self, ok: bool = True) -> None:
        """Settle the oldest held delivery: accepted, or failed with ``error()``."""
        payload, d = self.pending.pop(0)
        if ok:
            self.accepted.append(payload)
            d.callback(None)
        else:
            d.errback(self.error())

    def __call__(self, payload: Any) -> Any:
        from twisted.internet import defer

        self.attempts.append(payload)
        if self.state == "up":
            self.accepted.append(payload)
            return defer.succeed(None)
        if self.state == "down":
            return defer.fail(self.error())
        d: defer.Deferred = defer.Deferred()
        self.pending.append((payload, d))
        return d


class SinkHarness:
    """A real journal (temporary directory), a :class:`task.Clock`, metrics, and the
    :class:`hub.sinks.SinkPort` a sink is built with. ``devices``: the
    :class:`hub.sinks.DeviceInfo` the port offers. Fault events a sink journals are kept
    in ``events`` too."""

    def __init__(self, state_dir: str, devices: Sequence[Any] = (),
                 clock: Clock | None = None) -> None:
        import os

        from hub.journal import Journal
        from hub.metrics import Metrics
        from hub.sinks import SinkPort

        if clock is None:
            clock = Clock()
            clock.advance(1_767_225_600.0)
        self.clock = clock
        self.metrics = Metrics()
        os.makedirs(state_dir, exist_ok=True)
        self.journal = Journal(os.path.join(state_dir, "journal.sqlite"), clock=clock,
                               metrics=self.metrics)
        self.journal.open()
        self.events: list[Event] = []
        self.devices = list(devices)
        self.port = SinkPort(clock=clock, metrics=self.metrics, journal=self.journal,
                             record_events=self._record_events,
                             devices=lambda: tuple(self.devices),
                             state_dir=state_dir)
        self.sinks: list[Any] = []

    def _record_events(self, events: Sequence[Event]) -> Any:
        self.events += events
        return self.journal.append(list(events))

    def far_side(self, error: Callable[[], Exception] | None = None) -> FarSide:
        return FarSide(error)

    def start(self, sink: Any) -> Any:
        """Start ``sink`` (a service built on ``self.port``); stopped by :meth:`close`."""
        sink.startService()
        self.sinks.append(sink)
        return sink

    def feed(self, records: Sequence[Any]) -> int:
        """Journal ``records`` and commit them now; returns the last seq."""
        self.journal.append(records)
        self.journal.flush()
        return self.journal.last_seq()

    def run(self, seconds: float, step: float = 0.1) -> None:
        """Let ``seconds`` pass in steps of ``step``, committing what sinks journal."""
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end:
            self.clock.advance(min(step, end - self.clock.seconds()))
            self.journal.flush()

    def cursor(self, name: str) -> int:
        return self.journal.get_cursor(name)

    def check_delivered(self, name: str, far: FarSide,
                        seqs_of: Callable[[Any], Iterable[int]] | None = None) -> None:
        """The cursor ``name`` reached the journal's end, and (given ``seqs_of(payload)``,
        the seqs a payload carries) every seq reached the far side at least once."""
        last = self.journal.last_seq()
        assert self.cursor(name) == last, f"cursor {name} at {self.cursor(name)}, not {last}"
        if seqs_of is not None:
            got = {s for p in far.accepted for s in seqs_of(p)}
            wanted = {seq for seq, _ in self.journal.read(0, last + 1)}
            missing = sorted(wanted - got)
            assert not missing, f"never accepted by the far side: seqs {missing[:20]}"

    def close(self) -> None:
        for sink in reversed(self.sinks):
            if sink.running:
                sink.stopService()
        self.journal.close()


@pytest.fixture
def sink_harness(tmp_path) -> Iterator[SinkHarness]:
    """A :class:`SinkHarness` in ``tmp_path / "var"``; its sinks stopped and its journal
    closed after the test."""
    harness = SinkHarness(str(tmp_path / "var"))
    yield harness
    harness.close()
