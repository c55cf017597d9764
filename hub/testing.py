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
from collections.abc import Callable, Iterator, Sequence
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
