"""Every hook of hub/hookspecs.py, called as its docstring says, from a test distribution
installed through real entry-point metadata. test_every_hook_has_a_test keeps it that way."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from twisted.internet import defer

from hub import cli, hookspecs
from hub.journal import JournalClosedError
from hub.model import Command, Reading
from hub.service import HubService
from hub.testing import build_hub
from tests.support.distribution import PLUGINS, write_distribution

CONFIG = {
    "presence": {"heartbeat_interval": 10, "timeout_count": 1},
    "alarms": {"warning_ratio": 0, "defaults": {"temperature": {"alarm": 80}}},
    "models": {"x10": {"type": "scaled", "factor": 10}},
    "transports": {"idle": {"type": "idle"}},
    "sinks": {"copy": {"type": "memory", "batch": 2}},
    "devices": [{"id": "d1", "model": "simulated", "transport": "idle", "address": "x"},
                {"id": "d2", "model": "x10"}],
}


@pytest.fixture
def hooks(site_dir):
    write_distribution(site_dir, "hubtest-hooks", {"hooks": "hubtest_hooks"},
                       {"hubtest_hooks": (PLUGINS / "hubtest_hooks.py").read_text()})
    importlib.invalidate_caches()
    import hubtest_hooks

    hubtest_hooks.calls.clear()
    return hubtest_hooks


@pytest.fixture
def running(hooks, tmp_path, hub_clock):
    """A HubService started on a task.Clock; stopped at the end."""
    hub = build_hub(CONFIG, str(tmp_path / "var"), clock=hub_clock)
    service = HubService(hub, admin=False)
    d = service.startService()
    assert d.called, "start-up waited on something that never happens"
    yield hub, service
    if not service._closed:
        service.stopService()


def tick(hub, seconds=0.0):
    hub.clock.advance(seconds)
    hub.clock.advance(hub.config.journal.commit_interval)


def test_hook_hub_register_transport_types(hooks, running):
    """A contributed transport type is built by name for each configured transport."""
    assert ("transport_built", "idle") in hooks.calls
    _, service = running
    assert service.getServiceNamed("transports.idle").running


def test_hook_hub_register_sink_types(hooks, running):
    """A contributed sink gets its checked options and its own cursor in the journal."""
    hub, service = running
    sink = service.getServiceNamed("sinks.copy")
    assert sink.batch == 2
    hub.ingest("d1", [Reading("d1", "voltage", 220.0 + i, hub.clock.seconds(), "A")
                      for i in range(3)])
    tick(hub)
    for _ in range(2):
        tick(hub, 1.0)
    assert [r.value for r in sink.delivered] == [220.0, 221.0, 222.0]
    assert hub.journal.get_cursor("copy") == 3


def test_hook_hub_register_device_models(hooks, running):
    """A contributed model type is built from its checked options for the devices using it."""
    hub, _ = running
    model = hub.registry.get("d2").model
    assert model.factor == 10
    assert [r.value for r in model.decode("d2", b"\x00\x07", 0.0)] == [70.0]


def test_hook_hub_add_commands(hooks):
    """A plugin's subcommand is part of the `hub` command line and returns the exit code."""
    assert cli.main(["hello", "--name", "vendor"]) == 7
    assert ("hello", "vendor") in hooks.calls


def test_hook_hub_startup(hooks, running):
    """hub_startup runs once, after the services started."""
    assert hooks.calls.count(("startup", "hub")) == 1


def test_hook_hub_shutdown(hooks, running):
    """hub_shutdown runs once on stop, while the journal is still open."""
    hub, service = running
    hub.ingest("d1", [Reading("d1", "voltage", 220.0, hub.clock.seconds(), "A")])
    tick(hub)
    service.stopService()
    assert [c for c in hooks.calls if c[0] == "shutdown"] == [("shutdown", 1)]
    failures = []
    hub.journal.append([]).addErrback(failures.append)
    assert failures and failures[0].check(JournalClosedError)


def test_hook_hub_event_recorded(hooks, running):
    """Each committed event is reported once, raise and clear."""
    hub, _ = running
    t = hub.clock.seconds()
    hub.ingest("d1", [Reading("d1", "temperature", 90.0, t, "T1")])
    tick(hub)
    hub.ingest("d1", [Reading("d1", "temperature", 20.0, t + 1, "T1")])
    tick(hub)
    assert [c for c in hooks.calls if c[0] == "event" and c[1] == "temperature"] == [
        ("event", "temperature", "raised"), ("event", "temperature", "cleared")]


def test_hook_hub_device_offline(hooks, running):
    """A device silent past interval × count is reported offline once."""
    hub, _ = running
    tick(hub, 10.5)
    tick(hub, 30)
    assert hooks.calls.count(("offline", "d1")) == 1


def test_hook_hub_device_online(hooks, running):
    """A device that was offline and sends data again is reported online."""
    hub, _ = running
    tick(hub, 10.5)
    hub.heartbeat("d1")
    tick(hub)
    assert ("online", "d1") in hooks.calls


def test_hook_hub_command_finished(hooks, running):
    """The final status of a command reaches the observers."""
    hub, _ = running

    class Target:
        def send_command(self, device, command):
            return defer.succeed(None)

    hub.commands.register_target("idle", Target())
    hub.commands.execute(Command("c9", "d1", "silence", hub.clock.seconds()))
    tick(hub)
    assert ("command", "silence", "succeeded") in hooks.calls


def test_every_hook_has_a_test():
    """Each hook spec has a test named test_hook_<name> somewhere under tests/."""
    source = "\n".join(p.read_text() for p in Path(__file__).parents[1].rglob("test_*.py"))
    names = [n for n in dir(hookspecs) if n.startswith("hub_")]
    missing = [n for n in names if not re.search(rf"def test_hook_{n}\b", source)]
    assert missing == []
